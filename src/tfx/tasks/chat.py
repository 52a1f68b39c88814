"""Chat templates: a conversation ([{role, content}]) rendered into the prompt a chat model was trained on,
with transformers' own `apply_chat_template` (the template is Jinja, stored with the tokenizer). Used by
the generate task (--chat: each record one user turn), `tfx chat` (the session's history) and the server's
/v1/chat/completions. Rendering needs only transformers' tokenizer, never the model's weights."""

from __future__ import annotations

from typing import Any

from tfx.errors import UsageError

ROLES = ("system", "user", "assistant")


def no_template(name: str) -> UsageError:
    return UsageError(
        f"{name} has no chat template (its tokenizer sets no chat_template): it is not a chat model.",
        "Use a chat model (one whose tokenizer has a chat template), or send plain prompts: tfx generate without --chat, or /v1/completions.",
    )


def has_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def check_template(tokenizer: Any, name: str) -> None:
    if not has_template(tokenizer):
        raise no_template(name)


def user_turn(text: str, system: str | None = None) -> list[dict[str, str]]:
    """One user message (an input record), after an optional system message."""
    head = [{"role": "system", "content": system}] if system else []
    return head + [{"role": "user", "content": text}]


def render(template_tokenizer: Any, messages: list[dict[str, Any]], name: str, tokenizer: Any = None, tools: list[dict[str, Any]] | None = None) -> str:
    """The prompt for the assistant's next reply. template_tokenizer: transformers' tokenizer, which has the
    template; tokenizer: the one that will encode the prompt (the fast GPT-2 path's own; default: the same);
    tools: OpenAI-style function tools for a template that takes them (the server's tool calls).

    The template writes the special tokens itself (apply_chat_template encodes its output without adding
    any), while every tfx path encodes prompts with the tokenizer's own special tokens: so a leading BOS
    the tokenizer would add anyway is taken off the text, and the ids come out once, not twice."""
    check_template(template_tokenizer, name)
    try:
        extra = {"tools": tools} if tools else {}
        text = template_tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **extra)
    except Exception as exc:  # noqa: BLE001 - Jinja's TemplateError (raise_exception in the template), ValueError
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"the chat template of {name} refused the conversation: {detail}.", "Send the roles and order the model's template accepts.") from None
    if not isinstance(text, str):  # a template that renders nothing usable
        raise UsageError(f"the chat template of {name} did not render a prompt.", "Use a model whose chat template renders text.")
    return _without_added_bos(text, tokenizer if tokenizer is not None else template_tokenizer)


def _without_added_bos(text: str, tokenizer: Any) -> str:
    bos = getattr(tokenizer, "bos_token", None)
    if bos and text.startswith(bos) and adds_bos(tokenizer):
        return text[len(bos) :]
    return text


def adds_bos(tokenizer: Any) -> bool:
    """Whether encoding a text puts the BOS token in front of it (Llama's tokenizers do, GPT-2's do not)."""
    bos_id = getattr(tokenizer, "bos_token_id", None)
    if bos_id is None:
        return False
    return tokenizer("a")["input_ids"][:1] == [bos_id] and tokenizer("a", add_special_tokens=False)["input_ids"][:1] != [bos_id]
