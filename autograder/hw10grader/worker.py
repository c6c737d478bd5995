"""The sandboxed side: runs a student's definitions and answers probe requests.

The judge starts this file's text with ``python -I -c`` as the unprivileged user,
under resource limits, with argv = [kit_dir, reply_fd, limits as JSON]; it applies the limits before
anything else. Nothing in it is secret: it
holds no checks or reference values. Protocol (``hw10kit.checks.wire`` lines):

  judge -> worker (stdin):  {"chunks": [{"cell", "source", "tentative"}...]}, then requests
                            {"id", "probe", "target", "inputs", "torch_seed"}
  worker -> judge (reply_fd): {"ready": true, "failures": [[cell, line, statement, error]...]},
                            then {"id", "ok": outputs} or {"id", "error": text}

The student's own output (fd 1 and 2) goes to a pipe the judge drains and caps; the
request and reply channels live on private descriptors, and fd 0 is /dev/null, so
prints and input() cannot touch the protocol.
"""
import os
import sys


def apply_limits(spec: str) -> None:
    """The judge's rlimits, and no_new_privs: no setuid program can raise this
    process or its children above the sandbox user."""
    import ctypes
    import json
    import resource

    for name, (soft, hard) in json.loads(spec).items():
        resource.setrlimit(getattr(resource, name), (soft, hard))
    PR_SET_NO_NEW_PRIVS = 38
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def main():
    kit_dir, reply_fd = sys.argv[1], int(sys.argv[2])
    apply_limits(sys.argv[3])
    requests = os.fdopen(os.dup(0), "rb")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    replies = os.fdopen(reply_fd, "wb", buffering=0)
    sys.path.insert(0, kit_dir)
    os.environ.setdefault("MPLBACKEND", "Agg")

    from hw10kit.checks import wire
    from hw10kit.checks.core import call_probe, resolve_probe, student_traceback
    from hw10kit.notebook import Chunk, exec_chunks

    def send(msg):
        replies.write(wire.dumps(msg))

    setup = wire.loads(requests.readline())
    import torch

    torch.set_num_threads(1)
    namespace = {"__name__": "__main__", "__builtins__": __builtins__}
    chunks = [Chunk(int(c["cell"]), str(c["source"]), tentative=[int(n) for n in c["tentative"]])
              for c in setup["chunks"]]
    failures = exec_chunks(chunks, namespace)
    send({"ready": True, "failures": [[f.cell, f.line, f.text, student_traceback(f.error)]
                                      for f in failures]})

    for line in requests:
        req = wire.loads(line)
        try:
            probe = resolve_probe(req["probe"])
        except (ValueError, ImportError, AttributeError) as exc:
            send({"id": req["id"], "error": f"internal: {exc}"})
            continue
        reply = call_probe(probe, req["target"], namespace, req["inputs"], int(req["torch_seed"]))
        try:
            send({"id": req["id"], **reply})
        except wire.WireError as exc:
            send({"id": req["id"], "error": f"{req['target']} returned something that cannot be "
                                            f"checked ({exc})"})


main()
