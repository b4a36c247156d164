"""Scripted models on real wire formats, for tests and benchmarks: ours, and those of apps built on massgen-litellm.

A scripted model is an ordinary LiteLLM model string pointed at a backend that answers by a script (a function of
the request), so every participant call goes through LiteLLM's real provider code and over HTTP, never a mock of
LiteLLM itself. Nothing here is imported by the package at run time.

* `openai_chat`: the OpenAI Chat Completions API (`openai/<name>` with an `api_base`), JSON and SSE.
* `gemini`: the Gemini API (`gemini/<name>` with an `api_base` ending in `/v1beta`), JSON and SSE, thought signatures.
* `anthropic_messages`: the Anthropic Messages API (`anthropic/<name>` with an `api_base`), JSON and SSE, with the
  API's rules enforced (thinking blocks and their signatures, tool_use/tool_result pairing, max_tokens).
* `loopback`: any of these backends as a real HTTP server on 127.0.0.1, on a thread of its own.
"""
