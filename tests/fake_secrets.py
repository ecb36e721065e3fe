"""The suite's fake secrets: distinctive, so that the secrets check finds any leak of them."""

from __future__ import annotations

#: The API key of the shared test config (``gateway_config``).
FAKE_API_KEY = "sk-aigw-fake-key-7c41e9d2"
#: Prompt text that must never be logged.
FAKE_PROMPT = "aigw private prompt 3f8b: the patient's diagnosis"

#: Every fake secret the suite uses: API keys, gateway keys, URL passwords and prompt texts.
SECRETS = (
    FAKE_API_KEY,
    FAKE_PROMPT,
    "sk-live-VERY-SECRET-KEY",
    "pk-GATEWAY-SECRET",
    "sk-console-secret-0123456789",
    "my private medical question about zebras",
    "sk-live-SECRET",
    "pa55word",
    "hunter2",
)
