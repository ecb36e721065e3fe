"""The secrets check itself: a fake secret in a log record or an exception fails the test."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_a_fake_secret_in_a_log_record_or_an_exception_fails_the_test_and_is_counted(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    pytester.makepyfile(
        test_leaks="""
        import logging

        from aigw_middleware import GatewayConfig, GatewayError
        from tests.fake_secrets import FAKE_API_KEY, FAKE_PROMPT

        def test_logs_the_key_at_debug():
            logging.getLogger("some.library").debug("headers: Bearer %s", FAKE_API_KEY)

        def test_logs_the_prompt_in_an_extra_field():
            logging.getLogger("app").info("call", extra={"body": FAKE_PROMPT})

        def test_makes_an_error_that_shows_the_key():
            GatewayError(f"failed with key {FAKE_API_KEY}")

        def test_masked_reprs_and_clean_records_pass():
            config = GatewayConfig(api_key=FAKE_API_KEY, base_url="http://u:hunter2@gw.test")
            logging.getLogger("app").warning("config %r", config)
        """
    )

    result = pytester.runpytest_subprocess("-p", "tests.secrets_check")

    result.assert_outcomes(passed=4, errors=3)
    result.stdout.fnmatch_lines(
        [
            "*a secret showed*",
            "*log record on 'some.library': fake secret #0 in *Bearer <SECRET>*",
            "*secrets check: * log records, * exceptions, * reprs scanned for * fake secrets; hits: 3",
        ]
    )
