"""moto_server for `espresso cluster`, with its request recorder made safe for concurrent requests.

moto serves each request on a thread of its own, and its recorder appends a request to the
recording in several writes. Two large requests at once (two workers writing run files) then
interleave their lines, and the next start cannot replay the recording: moto answers HTTP 500 and
everything recorded is lost. Here one lock lets one request at a time write its line whole, and
reads are not recorded at all: S3's GET and HEAD, and Secrets Manager's reads, which are POSTs
named by their X-Amz-Target header (each credentials read was a line of the recording, and a wait
on the lock).

Run with the Python that has moto, with moto_server's arguments: python moto_server.py -H HOST -p PORT
"""

import sys
import threading

from moto.moto_api._internal.recorder.models import Recorder
from moto.server import main

_one_line_at_a_time = threading.Lock()
_record = Recorder._record_request


_SECRETS_MANAGER_READS = {
    "secretsmanager.GetSecretValue",
    "secretsmanager.BatchGetSecretValue",
    "secretsmanager.DescribeSecret",
    "secretsmanager.ListSecrets",
}


def _record_whole(self, request, *args, **kwargs):
    # Reads change nothing, so replaying them does nothing: leaving them out keeps the recording
    # (and the next start's replay) to what changed state.
    if request.method in ("GET", "HEAD"):
        return None
    if request.headers.get("X-Amz-Target", "") in _SECRETS_MANAGER_READS:
        return None
    with _one_line_at_a_time:
        return _record(self, request, *args, **kwargs)


Recorder._record_request = _record_whole

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
