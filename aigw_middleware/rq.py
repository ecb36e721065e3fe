"""RQ: the correlation context travels in each job's ``meta``, from the enqueuer to the worker.

- :class:`CorrelationQueue` is an ``rq.Queue`` whose jobs carry the bound context in
  ``job.meta`` (``aigw_request_id``, ``aigw_tenant``, ``aigw_team``, ``aigw_user``,
  ``aigw_session``; see :mod:`aigw_middleware.propagation`). Outside any context a job gets a
  fresh request ID of its own. Keys the caller put in ``meta=`` win.
- :class:`CorrelationJob` binds that context while the job runs and resets it afterwards, also
  when the job fails. A retried job runs again from the same ``meta``, so with the same request
  ID. Start workers with it::

      rq worker --job-class aigw_middleware.rq.CorrelationJob

A job whose ``meta`` holds invalid values (not strings, too long, outside their rule) runs with a
fresh request ID and nothing else, and logs one WARNING; the job itself never fails for it.
"""

from __future__ import annotations

from typing import Any

try:
    from rq import Queue
    from rq.job import Job
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError("aigw_middleware.rq needs RQ: pip install 'aigw-middleware[rq]'") from exc

from ._jobs import bound_from, carrier_at_enqueue

__all__ = ["CorrelationJob", "CorrelationQueue"]


class CorrelationJob(Job):
    """An RQ job that runs with the correlation context its ``meta`` carries."""

    def perform(self) -> Any:
        """Run the job with the context of its ``meta`` bound, and reset it afterwards."""
        with bound_from(self.meta):
            return super().perform()


class CorrelationQueue(Queue):
    """An RQ queue whose jobs carry the bound correlation context in ``job.meta``.

    Its jobs are :class:`CorrelationJob` objects, so a queue that runs jobs in the caller's
    process (``is_async=False``) binds the context as a worker would.
    """

    job_class = CorrelationJob
    """The queue's jobs bind their context when they run, in a worker or in line."""

    def create_job(self, *args: Any, **kwargs: Any) -> Job:
        """RQ's ``create_job``, with the bound context added to the job's ``meta``."""
        # Every way to enqueue (enqueue, enqueue_call, enqueue_at, enqueue_in, enqueue_many)
        # creates its jobs here.
        job = super().create_job(*args, **kwargs)
        for key, value in carrier_at_enqueue().items():
            job.meta.setdefault(key, value)
        return job
