"""Specification of aigw_middleware.celery: the context travels with each task to the worker.

A real worker runs in a thread of the test process on Celery's in-memory broker; the
end-to-end module runs one on Redis behind Django and Flask views.
"""

from __future__ import annotations

import contextvars
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery, signals
from celery.contrib.testing.worker import start_worker
from kombu import Connection

from aigw_middleware import bind_context, current_context, get_client
from aigw_middleware.celery import (
    _REQUEST_ID_HEADER,
    _SESSION_HEADER,
    _TEAM_HEADER,
    _TENANT_HEADER,
    _USER_HEADER,
    install,
)
from aigw_middleware.config import GatewayConfig
from aigw_middleware.log import CorrelationFilter
from aigw_middleware.testing import FakeGateway

REQUEST_ID = "web-req-0001"
TIMEOUT = 10.0
POLL = 0.02  # seconds between result checks; Celery polls every 0.5 s by default

# The apps of this module have no fix-ups: pytest-django sets DJANGO_SETTINGS_MODULE, which would
# give each plain app Celery's Django fix-up. Starting the worker would then leave the fix-up's
# handlers on the global task signals, and before Celery 5.6 they open a database connection on
# every task signal, which pytest-django refuses in tests without the database.
app = Celery("test_celery", set_as_current=False, fixups=[])
app.conf.update(
    broker_url="memory://",
    result_backend="cache+memory://",
    broker_connection_retry_on_startup=True,
    # The worker would otherwise replace the root logger's handlers, pytest's among them.
    worker_hijack_root_logger=False,
    broker_transport_options={"polling_interval": 0.05},
)
install(app)

task_log = logging.getLogger("tests.celery.task")


def ask_gateway() -> dict[str, Any]:
    """One chat call from inside a task; what the task saw bound."""
    get_client().chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
    )
    context = current_context()
    assert context is not None
    return {"request_id": context.request_id, "tenant": context.tenant, "team": context.team}


@app.task(name="tests.ask")
def ask() -> dict[str, Any]:
    task_log.info("asking the gateway")
    return ask_gateway()


@app.task(name="tests.ask_then_enqueue")
def ask_then_enqueue() -> str:
    ask_gateway()
    return str(ask.delay().id)


@app.task(name="tests.fail")
def fail() -> None:
    ask_gateway()
    raise RuntimeError("task failed on purpose")


@app.task(name="tests.retry_once", bind=True, max_retries=1, default_retry_delay=0)
def retry_once(self: Any) -> dict[str, Any]:
    seen = ask_gateway()
    if self.request.retries == 0:
        raise self.retry()
    return seen


@app.task(name="tests.seen")
def seen() -> dict[str, Any] | None:
    context = current_context()
    return None if context is None else {"request_id": context.request_id}


@pytest.fixture(scope="module")
def worker() -> Iterator[None]:
    root = logging.getLogger()
    level, handlers = root.level, set(root.handlers)
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=15):
        # start_worker sets up logging as a worker process would: the root logger at ERROR with a
        # stderr handler. Put back the test session's, so later tests log as before.
        root.setLevel(level)
        for handler in set(root.handlers) - handlers:
            root.removeHandler(handler)
        yield


def received(gw: FakeGateway, index: int = -1) -> tuple[str | None, str | None, str | None]:
    headers = gw.requests[index].headers
    return (headers.get("x-ai-request-id"), headers.get("x-ai-tenant"), headers.get("x-ai-team"))


# --- publishing ---------------------------------------------------------------------------


def published_headers(send: Any) -> dict[str, Any]:
    """The headers of the message that ``send()`` publishes, read back from a private broker."""
    private = Celery("test_celery_publish", set_as_current=False, fixups=[])
    private.conf.update(broker_url="memory://", task_default_queue="publish-check")
    install(private)
    send(private.task(name="tests.publish_only")(seen.run))
    with Connection("memory://") as conn:
        queue = conn.SimpleQueue("publish-check", no_ack=True)
        message = queue.get(timeout=TIMEOUT)
        queue.close()
    return dict(message.headers)


def test_published_task_message_carries_the_bound_request_id_tenant_and_team() -> None:
    with bind_context(request_id=REQUEST_ID, tenant="acme", team="search"):
        headers = published_headers(lambda task: task.delay())

    assert headers[_REQUEST_ID_HEADER] == REQUEST_ID
    assert headers[_TENANT_HEADER] == "acme"
    assert headers[_TEAM_HEADER] == "search"


def test_published_task_message_carries_the_bound_user_and_session() -> None:
    with bind_context(request_id=REQUEST_ID, user="u-42", session="chat-7"):
        headers = published_headers(lambda task: task.delay())

    assert (headers[_USER_HEADER], headers[_SESSION_HEADER]) == ("u-42", "chat-7")
    assert _TENANT_HEADER not in headers


def test_task_published_outside_any_context_carries_no_correlation_headers() -> None:
    headers = published_headers(lambda task: task.delay())

    assert not {_REQUEST_ID_HEADER, _TENANT_HEADER, _TEAM_HEADER} & headers.keys()


def test_absent_tenant_and_team_are_left_out_of_the_message() -> None:
    with bind_context(request_id=REQUEST_ID):
        headers = published_headers(lambda task: task.delay())

    assert headers[_REQUEST_ID_HEADER] == REQUEST_ID
    assert not {_TENANT_HEADER, _TEAM_HEADER} & headers.keys()


def test_headers_passed_to_apply_async_win_over_the_bound_context() -> None:
    with bind_context(request_id=REQUEST_ID, tenant="acme"):
        headers = published_headers(
            lambda task: task.apply_async(headers={_TENANT_HEADER: "explicit"})
        )

    assert headers[_REQUEST_ID_HEADER] == REQUEST_ID
    assert headers[_TENANT_HEADER] == "explicit"


# --- in the worker ------------------------------------------------------------------------


@pytest.mark.usefixtures("worker")
def test_worker_task_calls_the_gateway_with_the_publishers_request_id_tenant_and_team(
    fake_gateway: FakeGateway, shared_config: GatewayConfig
) -> None:
    with bind_context(request_id=REQUEST_ID, tenant="acme", team="search"):
        result = ask.delay()

    result.get(timeout=TIMEOUT, interval=POLL)
    assert received(fake_gateway) == (REQUEST_ID, "acme", "search")


@pytest.mark.usefixtures("worker")
def test_worker_task_calls_the_gateway_with_the_publishers_user_and_session(
    fake_gateway: FakeGateway, shared_config: GatewayConfig
) -> None:
    with bind_context(request_id=REQUEST_ID, user="u-42", session="chat-7"):
        result = ask.delay()

    result.get(timeout=TIMEOUT, interval=POLL)
    headers = fake_gateway.requests[-1].headers
    assert (headers["x-ai-user"], headers["x-ai-session"]) == ("u-42", "chat-7")


@pytest.mark.usefixtures("worker")
def test_task_published_without_context_gets_a_fresh_request_id_and_no_tenant(
    fake_gateway: FakeGateway, shared_config: GatewayConfig
) -> None:
    first = ask.delay().get(timeout=TIMEOUT, interval=POLL)
    second = ask.delay().get(timeout=TIMEOUT, interval=POLL)

    assert first["tenant"] is None
    assert first["team"] is None
    assert received(fake_gateway, 0) == (first["request_id"], None, None)
    assert received(fake_gateway, 1) == (second["request_id"], None, None)
    assert first["request_id"] != second["request_id"]


@pytest.mark.usefixtures("worker")
def test_next_task_on_the_same_worker_does_not_inherit_the_previous_tenant(
    fake_gateway: FakeGateway, shared_config: GatewayConfig
) -> None:
    with bind_context(request_id=REQUEST_ID, tenant="acme", team="search"):
        ask.delay().get(timeout=TIMEOUT, interval=POLL)
    ask.delay().get(timeout=TIMEOUT, interval=POLL)

    request_id, tenant, team = received(fake_gateway, 1)
    assert (tenant, team) == (None, None)
    assert request_id != REQUEST_ID


@pytest.mark.usefixtures("worker")
def test_task_enqueued_from_inside_a_task_carries_the_same_request_id(
    fake_gateway: FakeGateway, shared_config: GatewayConfig
) -> None:
    with bind_context(request_id=REQUEST_ID, tenant="acme"):
        child_id = ask_then_enqueue.delay().get(timeout=TIMEOUT, interval=POLL)

    child = app.AsyncResult(child_id).get(timeout=TIMEOUT, interval=POLL)
    assert child == {"request_id": REQUEST_ID, "tenant": "acme", "team": None}
    assert received(fake_gateway, 0) == received(fake_gateway, 1) == (REQUEST_ID, "acme", None)


@pytest.mark.usefixtures("worker")
def test_log_record_emitted_inside_a_task_has_the_publishers_request_id(
    caplog: pytest.LogCaptureFixture, fake_gateway: FakeGateway, shared_config: GatewayConfig
) -> None:
    caplog.handler.addFilter(CorrelationFilter())
    with caplog.at_level(logging.INFO, logger=task_log.name):
        with bind_context(request_id=REQUEST_ID):
            result = ask.delay()
        result.get(timeout=TIMEOUT, interval=POLL)

    [record] = [r for r in caplog.records if r.name == task_log.name]
    assert record.request_id == REQUEST_ID  # type: ignore[attr-defined]


@pytest.mark.usefixtures("worker")
def test_failed_task_keeps_its_request_id_on_celerys_error_record_and_leaves_the_worker_clean(
    caplog: pytest.LogCaptureFixture, fake_gateway: FakeGateway, shared_config: GatewayConfig
) -> None:
    caplog.handler.addFilter(CorrelationFilter())
    with bind_context(request_id=REQUEST_ID, tenant="acme"):
        failed = fail.delay()
    with pytest.raises(RuntimeError, match="on purpose"):
        failed.get(timeout=TIMEOUT, interval=POLL)

    assert seen.delay().get(timeout=TIMEOUT, interval=POLL)["request_id"] != REQUEST_ID
    errors = [r for r in caplog.records if r.levelno == logging.ERROR and "on purpose" in r.message]
    assert errors
    assert all(r.request_id == REQUEST_ID for r in errors)


@pytest.mark.usefixtures("worker")
def test_retried_task_keeps_its_request_id_and_tenant_on_every_run(
    fake_gateway: FakeGateway, shared_config: GatewayConfig
) -> None:
    with bind_context(request_id=REQUEST_ID, tenant="acme"):
        result = retry_once.delay()

    assert result.get(timeout=TIMEOUT, interval=POLL)["request_id"] == REQUEST_ID
    assert len(fake_gateway.requests) == 2
    assert received(fake_gateway, 0) == received(fake_gateway, 1) == (REQUEST_ID, "acme", None)


@pytest.mark.usefixtures("worker")
@pytest.mark.parametrize(
    ("headers", "warning"),
    [
        ({_REQUEST_ID_HEADER: "bad id\nforged"}, "invalid incoming aigw_request_id"),
        ({_REQUEST_ID_HEADER: REQUEST_ID, _TENANT_HEADER: "acme corp"}, "invalid tenant"),
    ],
)
def test_invalid_values_in_the_message_are_replaced_or_dropped_and_logged(
    caplog: pytest.LogCaptureFixture,
    fake_gateway: FakeGateway,
    shared_config: GatewayConfig,
    headers: dict[str, str],
    warning: str,
) -> None:
    with caplog.at_level(logging.WARNING, logger="aigw_middleware"):
        ask.apply_async(headers=headers).get(timeout=TIMEOUT, interval=POLL)

    request_id, tenant, _ = received(fake_gateway)
    assert request_id is not None
    assert "\n" not in request_id
    assert " " not in request_id
    assert tenant is None
    assert any(warning in r.getMessage() for r in caplog.records)


GARBAGE = [
    pytest.param({_REQUEST_ID_HEADER: 12345}, id="int request ID"),
    pytest.param({_REQUEST_ID_HEADER: {"id": REQUEST_ID}}, id="dict request ID"),
    pytest.param({_REQUEST_ID_HEADER: [REQUEST_ID]}, id="list request ID"),
    pytest.param({_TENANT_HEADER: 7, _TEAM_HEADER: ["ml"]}, id="int tenant and list team"),
    pytest.param(
        {_REQUEST_ID_HEADER: None, _TENANT_HEADER: {"name": "acme"}, _TEAM_HEADER: True},
        id="dict tenant and bool team",
    ),
]


def aigw_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r for r in caplog.records if r.name == "aigw_middleware" and r.levelno >= logging.WARNING
    ]


# --- eager mode ---------------------------------------------------------------------------


@pytest.fixture
def eager() -> Iterator[None]:
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False


@pytest.mark.usefixtures("eager")
def test_eager_task_runs_in_the_callers_context_and_leaves_it_bound(
    fake_gateway: FakeGateway, shared_config: GatewayConfig
) -> None:
    with bind_context(request_id=REQUEST_ID, tenant="acme", team="search") as bound:
        ask_then_enqueue.delay()
        assert current_context() is bound

    assert received(fake_gateway, 0) == received(fake_gateway, 1) == (REQUEST_ID, "acme", "search")


@pytest.mark.usefixtures("eager")
def test_a_task_runs_with_the_publishers_user_and_session(
    fake_gateway: FakeGateway, shared_config: GatewayConfig
) -> None:
    with bind_context(request_id=REQUEST_ID, user="u-42", session="chat-7"):
        ask_then_enqueue.delay()

    for request in fake_gateway.requests:
        assert (request.headers["x-ai-user"], request.headers["x-ai-session"]) == ("u-42", "chat-7")


@pytest.mark.usefixtures("eager")
def test_eager_task_without_a_caller_context_uses_one_request_id_for_its_calls(
    fake_gateway: FakeGateway, shared_config: GatewayConfig
) -> None:
    ask_then_enqueue.delay()

    request_id, tenant, _ = received(fake_gateway, 0)
    assert request_id is not None
    assert tenant is None
    assert received(fake_gateway, 1) == (request_id, None, None)


@pytest.fixture(params=["worker", "eager"])
def run_mode(request: pytest.FixtureRequest) -> str:
    """Runs the test once with a worker and once with eager tasks: both must behave the same."""
    request.getfixturevalue(request.param)
    return str(request.param)


@pytest.mark.parametrize("headers", GARBAGE)
def test_headers_that_are_not_strings_are_dropped_with_one_warning_and_the_task_runs_bound(
    caplog: pytest.LogCaptureFixture,
    fake_gateway: FakeGateway,
    shared_config: GatewayConfig,
    run_mode: str,
    headers: dict[str, Any],
) -> None:
    with caplog.at_level(logging.WARNING, logger="aigw_middleware"):
        inside = ask.apply_async(headers=headers).get(timeout=TIMEOUT, interval=POLL)

    assert received(fake_gateway) == (inside["request_id"], None, None)
    assert re.fullmatch(r"[0-9a-f]{32}", inside["request_id"])
    [warning] = aigw_warnings(caplog)
    assert warning.levelno == logging.WARNING
    assert "not strings" in warning.getMessage()
    assert "acme" not in warning.getMessage()


@pytest.mark.usefixtures("eager")
def test_eager_task_uses_headers_passed_to_apply_async_like_a_worker(
    fake_gateway: FakeGateway, shared_config: GatewayConfig
) -> None:
    with bind_context(request_id=REQUEST_ID, tenant="acme"):
        inside = ask.apply_async(headers={_TENANT_HEADER: "explicit"}).get()

    assert inside == {"request_id": REQUEST_ID, "tenant": "explicit", "team": None}
    assert received(fake_gateway) == (REQUEST_ID, "explicit", None)


@pytest.mark.usefixtures("eager")
@pytest.mark.parametrize("caller", [None, REQUEST_ID], ids=["no caller context", "caller context"])
def test_eager_retried_task_keeps_one_request_id_on_every_run_like_a_worker(
    fake_gateway: FakeGateway, shared_config: GatewayConfig, caller: str | None
) -> None:
    if caller is None:
        result = retry_once.delay().get()
    else:
        with bind_context(request_id=caller, tenant="acme"):
            result = retry_once.delay().get()

    assert len(fake_gateway.requests) == 2
    assert received(fake_gateway, 0) == received(fake_gateway, 1)
    assert received(fake_gateway, 1)[0] == result["request_id"]
    if caller is not None:
        assert received(fake_gateway, 1) == (REQUEST_ID, "acme", None)


# --- installing ---------------------------------------------------------------------------


def test_installing_twice_binds_once_and_leaves_nothing_bound_after_a_task() -> None:
    install(app)
    install(app)

    inside = seen.apply().get()

    assert inside is not None
    assert current_context() is None


def test_tasks_of_an_app_that_was_not_installed_run_without_a_context() -> None:
    other = Celery("test_celery_other", set_as_current=False, fixups=[])
    other_seen = other.task(name="tests.other_seen")(seen.run)

    assert seen.apply().get() is not None
    assert other_seen.apply().get() is None


def test_postrun_in_another_context_than_prerun_resets_without_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    contextvars.copy_context().run(signals.task_prerun.send, sender=seen, task_id="t1", task=seen)
    with caplog.at_level(logging.ERROR):
        signals.task_postrun.send(sender=seen, task_id="t1", task=seen)

    assert not caplog.records
    assert current_context() is None


def test_failure_reported_outside_the_run_resets_what_prerun_bound() -> None:
    signals.task_prerun.send(sender=seen, task_id="t2", task=seen)
    assert current_context() is not None

    signals.task_failure.send(sender=seen, task_id="t2", exception=RuntimeError("lost"))

    assert current_context() is None
