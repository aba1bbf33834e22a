"""Fixed-count keep-alive HTTP/1.1 client: CONNS connections, REQS requests each.
usage: python3 fixed_client.py PORT CONNS REQS"""
import socket, sys, threading

port, conns, reqs = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
REQ = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: fixed\r\nAccept: */*\r\n\r\n"
ok = [0] * conns

def run(i):
    s = socket.create_connection(("127.0.0.1", port))
    buf = b""
    for _ in range(reqs):
        s.sendall(REQ)
        while True:
            end = buf.find(b"\r\n\r\n")
            if end >= 0:
                head = buf[:end].lower()
                n = int(head.split(b"content-length:")[1].split(b"\r\n")[0])
                if len(buf) >= end + 4 + n:
                    ok[i] += head.startswith(b"http/1.1 200")
                    buf = buf[end + 4 + n:]
                    break
            chunk = s.recv(65536)
            if not chunk:
                raise SystemExit("connection closed")
            buf += chunk
    s.close()

ts = [threading.Thread(target=run, args=(i,)) for i in range(conns)]
[t.start() for t in ts]
[t.join() for t in ts]
print(f"{sum(ok)} of {conns * reqs} requests answered 200")
