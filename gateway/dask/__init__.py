"""Submit stored jobs to Dask and record what comes back.

The gateway holds one :class:`Dispatcher`. It keeps one long-lived Dask client and no
Dask futures: a job's task is held on the scheduler by :mod:`scheduler.plugin` until
the gateway releases it, and outcomes arrive as events on Dask's event topics (msgpack,
never pickle). The gateway never unpickles what a user or a worker sent.

One job's way through this package:

- ``submit.py`` -- :class:`Submitter`: a request thread sends the stored job to Dask
  (large payloads scattered straight to a worker first); cancel restarts its worker.
- ``tracker.py`` -- :class:`JobTracker`: which jobs are tracked, missing or fetching,
  behind one lock, changed only by its named transitions.
- ``record.py`` -- :class:`Recorder`: the recorder thread takes started and result
  events, records outcomes in the store in batches and wakes waiting requests.
- ``fetch.py`` -- :class:`Fetcher`: threads that fetch larger outcomes and failures
  from Dask; envelope bytes -> :class:`gateway.store.Outcome`.
- ``release.py`` -- :class:`Releases`: recorded jobs' keys released on the scheduler
  together.
- ``deadlines.py`` -- :class:`Deadlines`: timeouts; jobs past theirs are stopped.
- ``link.py`` -- :class:`DaskLink`: the client, (re)connection, the cluster view
  (workers, Python versions), the keep-alive plugin's RPCs; job id <-> Dask key.
- ``reconcile.py`` -- :class:`Reconciler`: on every (re)connection and every 30 s,
  the store's active jobs are matched with the scheduler's tasks (tracked, fetched or
  resubmitted).
- ``dispatcher.py`` -- :class:`Dispatcher`: composes the parts; its connection thread
  checks the link and reconciles.
"""

from gateway.dask.dispatcher import Dispatcher
from gateway.dask.link import ClusterState

__all__ = ["ClusterState", "Dispatcher"]
