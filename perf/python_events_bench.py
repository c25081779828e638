"""The Python client's cost of an Events frame: CRC-32C of each event alone, and the
whole parse (Client._events: the struct vector's bytes, each event's fields and CRC) of a
frame of 4,096 unpacked events. Three rounds.

    python3 perf/python_events_bench.py <build>/wire/python wire/python
"""
import sys, time
sys.path[:0] = sys.argv[1:3]
import flatbuffers
from mesob_client import Client, EVENT, crc32c
from mesob.fb import Events as EventsTable, Event as EventStruct
n = 4096
evs = []
for k in range(n):
    f = [k + 1, 9, 10, 3, 0, 0, 4510 + k, 0, 0, 0, 451, 452, 700 + k, 0, 0, 0]
    f[-1] = crc32c(EVENT.pack(*f)[:92])
    evs.append(f)
b = flatbuffers.Builder(1 << 20)
EventsTable.StartEventsVector(b, n)
for e in reversed(evs):
    EventStruct.CreateEvent(b, *e)
v = b.EndVector()
EventsTable.Start(b); EventsTable.AddEvents(b, v); EventsTable.AddNext(b, n + 1); EventsTable.AddEnd(b, n + 1)
b.Finish(EventsTable.End(b), b"MSB1")
body = bytearray(b.Output())
raw = [EVENT.pack(*e)[:92] for e in evs]
for rnd in range(3):
    t = time.perf_counter(); [crc32c(r) for r in raw]; c = time.perf_counter() - t
    t = time.perf_counter(); Client._events(body); p = time.perf_counter() - t
    print("round %d: crc32c %.0f events/s (%.1f us each); whole frame parse %.0f events/s (%.1f us each)" % (rnd + 1, n / c, c / n * 1e6, n / p, p / n * 1e6))
