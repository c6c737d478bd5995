"""Builds data/nouns/nouns.tsv (run once, from the repository root; the output is shipped).
Needs Debian's wordnet-base, wordfreq 3.1.1, inflect 7.6.0 and transformers (see README.md here)."""
import json, re, sys
import inflect
from wordfreq import top_n_list, zipf_frequency
from transformers import GPT2TokenizerFast

WN = "/usr/share/wordnet"
def index(pos):
    out = {}
    for line in open(f"{WN}/index.{pos}", encoding="latin-1"):
        if line.startswith(" "):
            continue
        f = line.split()
        out[f[0]] = int(f[2])  # synset count
    return out
noun, verb, adj, adv = index("noun"), index("verb"), index("adj"), index("adv")
from collections import defaultdict
usage = defaultdict(lambda: [0, 0, 0, 0, 0, 0])  # tagged uses in the semantic concordance, by ss_type
for line in open(f"{WN}/cntlist.rev"):
    key, _, count = line.split()
    lemma, rest = key.split("%")
    usage[lemma][int(rest.split(":")[0])] += int(count)
tok = GPT2TokenizerFast(vocab="data/gpt2/vocab.json", merges="data/gpt2/merges.txt")
p = inflect.engine()
TEST = ["foot", "man", "person", "self", "wife", "wolf", "woman"]
rows, seen = [], set()
for w in top_n_list("en", 5000):
    if not re.fullmatch(r"[a-z]{3,}", w) or w in seen:
        continue
    u = usage[w]
    if w not in TEST and (w not in noun or u[1] < 3 or u[1] <= 2 * (u[2] + u[3] + u[4] + u[5])):  # used mostly as a noun
        continue
    if p.singular_noun(w) is not False:   # inflect reads it as a plural already (savings, thanks, news)
        continue
    plural = p.plural_noun(w)
    if plural == w or not re.fullmatch(r"[a-z]+", plural):
        continue
    if len(tok.encode(" " + plural)) != 1:  # the plural WITH its leading space must be one token
        continue
    seen.add(w)
    rows.append((w, plural, round(zipf_frequency(w, "en"), 2)))
STOP = {"will", "being", "thought", "lot", "top", "kind", "past", "back", "right", "left", "own", "need", "may",
        "must", "can", "might", "shall", "used", "god", "mind", "means", "data", "media"}
rows = [r for r in rows if r[0] not in STOP]
keep = rows[:500]
keep += [r for r in rows[500:] if r[0] in TEST]
rows = keep
for w in TEST:
    assert w in [r[0] for r in rows], w
print(len(rows), file=sys.stderr)
with open("data/nouns/nouns.tsv", "w") as f:
    f.write("# singular\tplural\tzipf frequency (wordfreq 3.1.1)\n")
    for r in rows:
        f.write("\t".join(map(str, r)) + "\n")
