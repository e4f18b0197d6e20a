"""ChatML, the conversation format of Qwen2.5(-Coder)-Instruct: its chat template and rendering.

- ``QWEN25_CHAT_TEMPLATE``: the Jinja template Qwen publishes (tools support included); every
  tokenizer :func:`~qcoder_lib.tokenizer.train_tokenizer` builds carries it, so
  ``tokenizer.apply_chat_template`` works as with a hub tokenizer.
- :func:`render_chatml`: the same format written by hand (no template engine), the reference
  the template is tested against.
- :func:`encode_chat`: a conversation's ids with ``<|im_start|>`` / ``<|im_end|>`` inserted by id
  and every message encoded as data, so a message cannot open or close a turn.
"""

from __future__ import annotations

from qcoder_lib.tokenizer.encode import encode_data_batch
from qcoder_lib.tokenizer.special import IM_END, IM_START, special_id

DEFAULT_SYSTEM_PROMPT = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."

# Qwen2.5(-Coder)-Instruct's chat template (ChatML, tools support), as published by Qwen.
QWEN25_CHAT_TEMPLATE = (
    "{%- if tools %}\n"
    "    {{- '<|im_start|>system\\n' }}\n"
    "    {%- if messages[0]['role'] == 'system' %}\n"
    "        {{- messages[0]['content'] }}\n"
    "    {%- else %}\n"
    "        {{- '" + DEFAULT_SYSTEM_PROMPT + "' }}\n"
    "    {%- endif %}\n"
    '    {{- "\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.'
    "\\n\\nYou are provided with function signatures within <tools></tools> XML tags:\\n<tools>\" }}\n"
    "    {%- for tool in tools %}\n"
    '        {{- "\\n" }}\n'
    "        {{- tool | tojson }}\n"
    "    {%- endfor %}\n"
    '    {{- "\\n</tools>\\n\\nFor each function call, return a json object with function name and '
    "arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n"
    '{\\"name\\": <function-name>, \\"arguments\\": <args-json-object>}\\n</tool_call><|im_end|>\\n" }}\n'
    "{%- else %}\n"
    "    {%- if messages[0]['role'] == 'system' %}\n"
    "        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\n"
    "    {%- else %}\n"
    "        {{- '<|im_start|>system\\n" + DEFAULT_SYSTEM_PROMPT + "<|im_end|>\\n' }}\n"
    "    {%- endif %}\n"
    "{%- endif %}\n"
    "{%- for message in messages %}\n"
    '    {%- if (message.role == "user") or (message.role == "system" and not loop.first) '
    'or (message.role == "assistant" and not message.tool_calls) %}\n'
    "        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}\n"
    '    {%- elif message.role == "assistant" %}\n'
    "        {{- '<|im_start|>' + message.role }}\n"
    "        {%- if message.content %}\n"
    "            {{- '\\n' + message.content }}\n"
    "        {%- endif %}\n"
    "        {%- for tool_call in message.tool_calls %}\n"
    "            {%- if tool_call.function is defined %}\n"
    "                {%- set tool_call = tool_call.function %}\n"
    "            {%- endif %}\n"
    "            {{- '\\n<tool_call>\\n{\"name\": \"' }}\n"
    "            {{- tool_call.name }}\n"
    "            {{- '\", \"arguments\": ' }}\n"
    "            {{- tool_call.arguments | tojson }}\n"
    "            {{- '}\\n</tool_call>' }}\n"
    "        {%- endfor %}\n"
    "        {{- '<|im_end|>\\n' }}\n"
    '    {%- elif message.role == "tool" %}\n'
    '        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}\n'
    "            {{- '<|im_start|>user' }}\n"
    "        {%- endif %}\n"
    "        {{- '\\n<tool_response>\\n' }}\n"
    "        {{- message.content }}\n"
    "        {{- '\\n</tool_response>' }}\n"
    '        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}\n'
    "            {{- '<|im_end|>\\n' }}\n"
    "        {%- endif %}\n"
    "    {%- endif %}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n"
    "    {{- '<|im_start|>assistant\\n' }}\n"
    "{%- endif %}\n"
)


def render_chatml(messages: list[dict], *, add_generation_prompt: bool = False,
                  system_prompt: str = DEFAULT_SYSTEM_PROMPT) -> str:
    """ChatML written by hand (no template engine), as Qwen2.5 formats a conversation without
    tools: a default system turn when the first message is not a system one, then
    ``<|im_start|>{role}\\n{content}<|im_end|>\\n`` per message, then ``<|im_start|>assistant\\n``
    when ``add_generation_prompt``. The reference the chat template is tested against."""
    out = []
    if not messages or messages[0]["role"] != "system":
        out.append(f"{IM_START}system\n{system_prompt}{IM_END}\n")
    for m in messages:
        out.append(f"{IM_START}{m['role']}\n{m['content']}{IM_END}\n")
    if add_generation_prompt:
        out.append(f"{IM_START}assistant\n")
    return "".join(out)


def encode_chat(tokenizer, messages: list[dict], *, add_generation_prompt: bool = False,
                system_prompt: str = DEFAULT_SYSTEM_PROMPT) -> list[int]:
    """Token ids of a conversation in ChatML (as :func:`render_chatml`), built safely: the
    ``<|im_start|>`` / ``<|im_end|>`` ids are inserted by id and everything between them
    (role, newline, content) is encoded as data. A message that contains ``"<|im_end|>"`` can
    therefore not close its turn early. For content without special-token strings the ids equal
    ``tokenizer.apply_chat_template(messages, tokenize=True)``.

    Plain turns only: a message with ``tool_calls`` or role ``tool`` raises ``ValueError``
    naming its index (format those with ``apply_chat_template``)."""
    start, end = special_id(tokenizer, IM_START), special_id(tokenizer, IM_END)
    for i, m in enumerate(messages):
        if m.get("tool_calls") or m.get("role") == "tool" or not isinstance(m.get("content"), str):
            raise ValueError(f"encode_chat: messages[{i}] is a tool message or has no text "
                             "content; use tokenizer.apply_chat_template for tool use")
    turns = [(m["role"], m["content"]) for m in messages]
    if not turns or turns[0][0] != "system":
        turns.insert(0, ("system", system_prompt))
    segments = [f"{role}\n{content}" for role, content in turns]
    seg_ids = encode_data_batch(tokenizer, segments + ["\n", "assistant\n"])
    newline, gen = seg_ids[-2], seg_ids[-1]
    ids: list[int] = []
    for body in seg_ids[:-2]:
        ids += [start, *body, end, *newline]
    if add_generation_prompt:
        ids += [start, *gen]
    return ids
