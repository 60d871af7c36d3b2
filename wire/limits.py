"""Size limits that more than one side relies on; each is stated here once.

The gateway enforces them, the SDK stays under them, the OpenAPI document states them.
"""

from __future__ import annotations

# A payload or result up to this size lives in the job's database row; larger ones in
# files. A call inside a batch must fit in a row, so the per-call limit is the same.
INLINE_LIMIT = 64 * 1024
MAX_CALL_BYTES = INLINE_LIMIT  # the pickled size of one call in a batch
MAX_CALLS = 1000  # calls in one batch
MAX_BATCH_BYTES = 16 << 20  # a whole batch body
MAX_JOBS = 10_000  # job ids in one ``POST /results``
MAX_FRAME_JSON_BYTES = 16 << 20  # an outcome frame's JSON (a pickled exception is in it)
# Largest outcome envelope a worker sends inside its result event (else the gateway
# fetches it). Small on purpose: the scheduler keeps the last events of a topic.
PUSH_LIMIT = 2048
