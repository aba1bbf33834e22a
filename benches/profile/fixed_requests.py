"""fixed_requests.py HOST PORT PATH N CONNS: N keep-alive GETs spread over CONNS
connections (threads), as fast as the server answers; prints the count and the
failures. For instruction counts under callgrind, where a fixed amount of work
matters more than a rate."""
import http.client
import sys
import threading

host, port, path, total, conns = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
failures = []


def client(n):
    c = http.client.HTTPConnection(host, port, timeout=120)
    for _ in range(n):
        c.request("GET", path)
        r = c.getresponse()
        r.read()
        if r.status != 200:
            failures.append(r.status)


threads = [threading.Thread(target=client, args=(total // conns,)) for _ in range(conns)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(f"{total // conns * conns} requests, {len(failures)} failures")
