"""Soft and hard prompts for "pluralize the noun" on a frozen causal LM (GPT-2).

The task: ``Singular: wolf\\nPlural:`` and the next token must be `` wolves`` (one GPT-2
token, leading space included). A *soft* prompt is ``n`` learned vectors prepended to the
input embeddings (the student's ``prepend_soft_prompt``), the attention mask extended
over them; GPT-2 is frozen and only the prompt trains (the student's
``trainable_parameters``). A *hard* prompt is ``k`` solved examples in plain text, with
no soft prompt at all.

What the course's version got wrong, and this one does not: the learning rate is the one
passed in; the model is put back in train mode at every epoch (and evaluated in eval
mode); a final batch of one example works; the hard-prompt baseline runs the plain model
(no soft padding prepended); the plural's label is the token of " plural", with its space.
"""
from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

TEMPLATE = "Singular: {}\nPlural:"


def query(singular: str) -> str:
    return TEMPLATE.format(singular)


def hard_prompt(singular: str, shots=()) -> str:
    """``k`` solved examples, a blank line after each, then the query."""
    return "".join(TEMPLATE.format(s) + f" {p}\n\n" for s, p in shots) + query(singular)


def target_id(tokenizer, plural: str) -> int:
    ids = tokenizer.encode(" " + plural)
    if len(ids) != 1:
        raise ValueError(f"' {plural}' is {len(ids)} tokens: keep only nouns whose plural is one token")
    return ids[0]


def _batch(tokenizer, texts, device):
    import torch

    encoded = [tokenizer.encode(t) for t in texts]
    length = max(len(e) for e in encoded)
    pad = tokenizer.eos_token_id
    ids = torch.full((len(encoded), length), pad, dtype=torch.long)
    mask = torch.zeros((len(encoded), length), dtype=torch.long)
    for i, e in enumerate(encoded):  # right padding: each example's last token is at len - 1
        ids[i, :len(e)] = torch.tensor(e)
        mask[i, :len(e)] = 1
    lengths = torch.tensor([len(e) for e in encoded])
    return ids.to(device), mask.to(device), lengths.to(device)


@dataclass
class SoftPrompt:
    """A frozen model with a trainable soft prompt, through the student's two functions."""
    model: object
    tokenizer: object
    n_tokens: int
    prepend: object            # prepend_soft_prompt(prompt, embedding, input_ids, attention_mask)
    trainable: object          # trainable_parameters(model, prompt)
    prompt: object = None
    params: list = field(default_factory=list)

    def __post_init__(self):
        import torch

        embedding = self.model.get_input_embeddings()
        # the course's initialisation: the first n vocabulary embeddings
        self.prompt = torch.nn.Parameter(embedding.weight[:self.n_tokens].detach().clone())
        self.params = list(self.trainable(self.model, self.prompt))

    def last_logits(self, texts):
        """(B, V) logits at each text's last token, soft prompt prepended."""
        import torch

        device = self.prompt.device
        ids, mask, lengths = _batch(self.tokenizer, texts, device)
        embeds, full_mask = self.prepend(self.prompt, self.model.get_input_embeddings(), ids, mask)
        logits = self.model(inputs_embeds=embeds, attention_mask=full_mask).logits
        last = self.n_tokens + lengths - 1
        return logits[torch.arange(len(texts), device=device), last]


def last_logits_plain(model, tokenizer, texts):
    """(B, V) logits at each text's last token, the model alone (hard prompts)."""
    import torch

    device = next(model.parameters()).device
    ids, mask, lengths = _batch(tokenizer, texts, device)
    logits = model(input_ids=ids, attention_mask=mask).logits
    return logits[torch.arange(len(texts), device=device), lengths - 1]


def evaluate(logits_fn, tokenizer, pairs, batch_size=16, shots=()) -> dict:
    """Accuracy of the greedy next token, and the most common wrong outputs."""
    import torch

    correct, wrong = 0, Counter()
    with torch.no_grad():
        for i in range(0, len(pairs), batch_size):
            chunk = pairs[i:i + batch_size]
            texts = [hard_prompt(s, shots) for s, _ in chunk]
            predicted = logits_fn(texts).argmax(-1).tolist()
            for (s, p), got in zip(chunk, predicted):
                if got == target_id(tokenizer, p):
                    correct += 1
                else:
                    wrong[tokenizer.decode([got])] += 1
    return {"accuracy": correct / max(1, len(pairs)), "n": len(pairs), "wrong": wrong.most_common(10)}


def train_soft_prompt(soft: SoftPrompt, train, val, epochs=40, lr=1e-4, batch_size=8, seed=0, log=print) -> dict:
    """Adam on the soft prompt only; validation accuracy after every epoch. Returns the
    history ``{"epoch", "loss", "val_accuracy", "lr"}``."""
    import torch

    model, tokenizer = soft.model, soft.tokenizer
    optimizer = torch.optim.Adam(soft.params, lr=lr)   # the lr passed in
    rng = random.Random(seed)
    history = {"epoch": [0], "loss": [float("nan")], "lr": lr,
               "val_accuracy": [evaluate_soft(soft, val)["accuracy"]]}
    targets = {p: target_id(tokenizer, p) for _, p in train}
    for epoch in range(1, epochs + 1):
        model.train()                                  # back in train mode at every epoch
        order = list(train)
        rng.shuffle(order)
        total, count = 0.0, 0
        for i in range(0, len(order), batch_size):     # the last batch may hold one example
            chunk = order[i:i + batch_size]
            logits = soft.last_logits([query(s) for s, _ in chunk])
            y = torch.tensor([targets[p] for _, p in chunk], device=logits.device)
            loss = torch.nn.functional.cross_entropy(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(chunk)
            count += len(chunk)
        history["epoch"].append(epoch)
        history["loss"].append(total / max(1, count))
        history["val_accuracy"].append(evaluate_soft(soft, val)["accuracy"])
        if log:
            log(f"epoch {epoch}: loss {history['loss'][-1]:.3f}, validation accuracy "
                f"{history['val_accuracy'][-1]:.1%}")
    return history


def evaluate_soft(soft: SoftPrompt, pairs, batch_size=16) -> dict:
    was_training = soft.model.training
    soft.model.eval()
    try:
        return evaluate(soft.last_logits, soft.tokenizer, pairs, batch_size)
    finally:
        soft.model.train(was_training)


def hard_prompt_curve(model, tokenizer, shot_pool, pairs, ks=range(10), seed=0, batch_size=16) -> dict:
    """Accuracy of k-shot hard prompts, k in ``ks``, on the plain model (no soft prompt):
    the shots are the first k of a seeded shuffle of ``shot_pool``."""
    shots = list(shot_pool)
    random.Random(seed).shuffle(shots)
    was_training = model.training
    model.eval()
    try:
        out = {}
        for k in ks:
            out[k] = evaluate(lambda texts: last_logits_plain(model, tokenizer, texts), tokenizer, pairs,
                              batch_size, shots=shots[:k])
        return out
    finally:
        model.train(was_training)
