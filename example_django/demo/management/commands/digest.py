"""``python example_django/manage.py digest sales support``: a command that calls the gateway.

``@bind_context(...)`` binds a correlation context of its own for each run, with a fresh request
ID: every gateway call of the run carries it, and every log line (through the project's
``CorrelationFilter``) shows it, so the run's lines and the gateway's records share one ID.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from aigw_middleware import bind_context, current_context, get_client

logger = logging.getLogger("example_django.digest")
MODEL = os.environ.get("EXAMPLE_MODEL", "gpt-4o-mini")


class Command(BaseCommand):
    help = "Ask the AI gateway for a one-line digest per topic, as the tenant acme's report job."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("topics", nargs="+", help="the topics to digest, e.g. sales support")

    @bind_context(tenant="acme", team="reports")
    def handle(self, *args: Any, **options: Any) -> None:
        context = current_context()
        assert context is not None
        logger.info("digest of %d topics", len(options["topics"]))
        for topic in options["topics"]:
            answer = get_client().chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": f"A one-line digest of {topic}"}]
            )
            self.stdout.write(f"{topic}: {answer.content}")
        logger.info("digest done")
        self.stdout.write(f"request ID {context.request_id}")
