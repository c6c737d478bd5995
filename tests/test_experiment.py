"""``experiment.py``: the models come from the manifest, each declares its own options
(an option of another model is an error), ``--help`` lists them per model, a broken model
costs only itself, and training problems end in one line."""
from __future__ import annotations

import importlib.util

import nbformat
import pytest

from hw10kit import gan_training as gt
from hw10kit import manifest, training
from hw10kit import vae_training as vt
from student_folder import SOURCE, make_release_folder, run_experiment


@pytest.fixture(scope="module")
def experiment():
    """source/hw10/experiment.py as a module (the kit is importable from the repository)."""
    spec = importlib.util.spec_from_file_location("experiment_under_test", SOURCE / "experiment.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _error(experiment, capsys, *argv) -> str:
    with pytest.raises(SystemExit) as exit_:
        experiment.parse_args(list(argv))
    assert exit_.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


def test_the_models_are_the_manifests_problems_that_train(experiment):
    assert sorted(experiment.problems()) == sorted(p.key for p in manifest.PROBLEMS if p.experiment)


def test_the_seeds_command_line_still_parses(experiment):
    args, problem, exp = experiment.parse_args(
        ["--model", "vae", "--num_latents", "10", "--iter_max", "50", "--iter_save", "25", "--runid", "3",
         "--out_dir", "runs"])
    assert (args.num_latents, args.iter_max, args.iter_save, args.runid, args.out_dir) == (10, 50, 25, 3, "runs")
    assert problem.key == "vae" and exp is vt.EXPERIMENT and args.recipe == "course"


def test_an_option_of_another_model_is_an_error_naming_its_model(experiment, capsys):
    line = _error(experiment, capsys, "--model", "vae", "--loss_g", "minimax")
    assert line == "experiment.py: error: --loss_g is an option of --model gan, not of --model vae"


def test_a_vae_option_with_the_gan_is_an_error_too(experiment, capsys):
    line = _error(experiment, capsys, "--model", "gan", "--recipe=tuned")
    assert line == "experiment.py: error: --recipe is an option of --model vae, not of --model gan"


def test_an_option_of_no_model_is_unrecognized(experiment, capsys):
    assert "unrecognized arguments: --bogus" in _error(experiment, capsys, "--model", "gan", "--bogus")


def test_help_lists_every_models_options_in_its_own_group(experiment, capsys):
    with pytest.raises(SystemExit):
        experiment.parse_args(["--help"])
    out = capsys.readouterr().out
    usage_end = out.index("options of every model")
    gan, vae = out.index("--model gan (hw10_gan.ipynb)"), out.index("--model vae (hw10_vae.ipynb)")
    sections = {"common": out[usage_end:gan], "gan": out[gan:vae], "vae": out[vae:]}
    for section, flags in {"common": ("--iter_max", "--threads", "--runid"),
                           "gan": ("--loss_g", "--precision"), "vae": ("--recipe", "--compile")}.items():
        for flag in flags:
            assert [name for name, text in sections.items() if flag in text] == [section], flag


def test_help_with_a_model_lists_only_that_models_options(experiment, capsys):
    with pytest.raises(SystemExit):
        experiment.parse_args(["--model", "gan", "--help"])
    out = capsys.readouterr().out
    assert "--loss_g" in out and "--recipe" not in out


def test_a_bad_thread_count_is_an_argparse_error(experiment, capsys):
    assert "--threads" in _error(experiment, capsys, "--model", "gan", "--threads", "0")


def test_every_experiment_option_is_unique_within_its_model():
    for exp in (vt.EXPERIMENT, gt.EXPERIMENT):
        flags = [o.flag for o in (*training.COMMON_OPTIONS, *exp.options)]
        assert len(flags) == len(set(flags))


def test_the_gan_says_what_a_correct_run_reaches():
    assert "about 8.7 (real digits: 9.64)" in gt.expectation(8.6, 10000)
    assert "far from that" not in gt.expectation(8.6, 10000)


def test_the_gan_points_to_the_checks_when_the_score_is_far_off():
    assert "run the check cells for the losses" in gt.expectation(3.1, 10000)


def test_a_broken_model_costs_only_itself(tmp_path):
    folder = make_release_folder(tmp_path)
    (folder / "hw10kit" / "gan_training.py").write_text("raise ImportError('half-edited')\n")
    helped = run_experiment(folder, "--help")
    assert helped.returncode == 0, helped.stderr
    assert "--recipe" in helped.stdout and "unavailable" in helped.stdout
    proc = run_experiment(folder, "--model", "gan", "--iter_max", "1")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "experiment.py: error: --model gan is unavailable: hw10kit.gan_training:EXPERIMENT could not be "
        "imported (ImportError: half-edited)"]


def test_a_loss_without_gradient_ends_the_run_in_one_line(tmp_path):
    folder = make_release_folder(tmp_path)
    path = folder / "hw10_gan.ipynb"
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(
        "def loss_nonsaturating_g(g, d, x_real, *, device):\n"
        "    return F.softplus(-d(x_real)).mean()  # never reaches g\n"))
    nbformat.write(nb, str(path))
    proc = run_experiment(folder, "--model", "gan", "--iter_max", "2", "--device", "cpu", "--no_progress")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "experiment.py: error: the generator's loss has no gradient with respect to g's parameters, so it "
        "cannot train g: run its check cell"]
    assert not (folder / "checkpoints").exists()


def test_a_model_declares_its_own_defaults_for_the_common_options(experiment):
    from hw10kit import diffusion_training

    args, _, _ = experiment.parse_args(["--model", "diffusion"])
    assert args.iter_max == diffusion_training.ITER_MAX != 10000
    assert experiment.parse_args(["--model", "vae"])[0].iter_max == 10000
    assert experiment.parse_args(["--model", "diffusion", "--iter_max", "7"])[0].iter_max == 7


def test_help_lists_an_option_two_models_declare_once(experiment, capsys):
    shared = training.Option("--shared_flag", "an option two models take")
    exp = training.Experiment(summary="x", run=lambda s: 0, options=(shared,))
    known = {p.key: p for p in manifest.PROBLEMS if p.experiment}
    keys = sorted(known)[:2]
    parser = experiment.build_parser(known, {keys[0]: exp, keys[1]: exp})
    text = parser.format_help()
    assert text.count("an option two models take") == 1 and "also takes --shared_flag" in text

