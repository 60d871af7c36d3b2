"""What crosses a process boundary, defined once for every side that reads or writes it.

- :mod:`wire.http`: API paths, header names and media types of the REST API.
- :mod:`wire.limits`: size limits that the SDK, the gateway and the workers must agree on.
- :mod:`wire.batch_body`: the body of ``POST /batches`` (length-prefixed call payloads).
- :mod:`wire.outcome_frames`: the framed answer of ``POST /results`` and ``/batches?wait``.
- :mod:`wire.buffer_index`: the index of a pickle's large buffers, after its STOP opcode.
- :mod:`wire.envelope`: the bytes a worker sends back for one job, and the event topics.

Nothing here unpickles: the gateway imports these modules too.
"""
