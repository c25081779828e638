"""The Python client (flatc --python from wire/mesob.fbs plus wire/python/mesob_client.py)
against a live mesobd: runs wire/python/example.py and checks what it prints.

Run by ctest with Debian's python3 and python3-flatbuffers:
    python_client_test.py <mesobd> <generated python dir> <wire/python dir>
"""
import os
import re
import signal
import subprocess
import sys
import tempfile

mesobd, generated, helper = sys.argv[1], sys.argv[2], sys.argv[3]
with tempfile.TemporaryDirectory(prefix="mesob-py-") as data:
    d = subprocess.Popen([mesobd, "--data-dir", data, "--port", "0", "--admin-port", "0", "--shards", "1"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = ""
    for line in d.stdout:
        out += line
        if "ready" in line:
            break
    m = re.search(r"listening on 127\.0\.0\.1:(\d+)", out)
    s = re.search(r"development gateway \"dev\" \(every role\), secret ([0-9a-f]+)", out)
    assert m and s, "mesobd did not start:\n" + out
    env = dict(os.environ, PYTHONPATH=generated + os.pathsep + helper)
    r = subprocess.run([sys.executable, os.path.join(helper, "example.py"), m.group(1), "dev", s.group(1)],
                       env=env, capture_output=True, text=True, timeout=60)
    d.send_signal(signal.SIGTERM)
    rest, _ = d.communicate(timeout=60)
    print(r.stdout, r.stderr)
    assert r.returncode == 0, "example.py failed"
    expect = ["accounts [0, 0]", "transfer [0]", "again [0]", "zero amount [22]",
              "account 101 debits 50000 credits 0", "account 102 debits 0 credits 50000", "account None",
              "empty batch refused: 9 request: create_transfers carries no operations",
              "group [0]", "joins [0, 0]", "start [0]", "round 2 0", "wrong round 123", "last payment 0",
              "group 700 phase 3 received [1, 2] escrow 0 group 701 None"]
    for e in expect:
        assert e in r.stdout, "missing %r in:\n%s" % (e, r.stdout)
    assert d.returncode == 0 and "stopped cleanly" in rest, rest
print("python client: ok")
