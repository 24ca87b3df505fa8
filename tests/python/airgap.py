"""Run by tests/airgap.rs inside a network namespace of its own (`unshare -n`): no interface but
loopback, which it brings up. Checks that nothing can be reached, then runs the main job (the
README's first command: K-QA answers judged with 25 checks) and `assay serve` with a chat and a
judge request over loopback. Exits non-zero, saying why, when any of it fails.

usage: airgap.py ASSAY_BINARY PORT DATABASE (run from the repository root)"""

import fcntl
import json
import socket
import struct
import subprocess
import sys
import time
import urllib.request

SIOCSIFFLAGS = 0x8914
IFF_UP, IFF_RUNNING = 0x1, 0x40


def loopback_up():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH", b"lo", IFF_UP | IFF_RUNNING))


def no_network():
    for address in [("1.1.1.1", 443), ("8.8.8.8", 53)]:
        try:
            socket.create_connection(address, timeout=2).close()
        except OSError:
            continue
        sys.exit(f"{address} is reachable: this is not an air-gapped namespace")


def post(base, path, body):
    request = urllib.request.Request(base + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=300) as response:
        return response.status, json.load(response)


def main():
    assay, port, db = sys.argv[1], sys.argv[2], sys.argv[3]
    loopback_up()
    no_network()

    job = subprocess.run([assay, "judge", "--checks", "examples/medical_answer_checks.json", "--items", "examples/kqa_items.jsonl"], capture_output=True, text=True)
    if job.returncode != 0:
        sys.exit(f"the main job failed:\n{job.stderr}")
    judgments = [json.loads(line) for line in job.stdout.splitlines() if line.strip()]
    if len(judgments) != 8 * 25:
        sys.exit(f"the main job wrote {len(judgments)} judgments, not 8 x 25")
    print(f"main job: {len(judgments)} judgments", flush=True)

    server = subprocess.Popen([assay, "serve", "--model", "smollm2", "--port", port, "--db", db], stdout=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(base + "/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.time() > deadline or server.poll() is not None:
                sys.exit("the server did not become ready")
            time.sleep(0.2)
        status, chat = post(base, "/v1/chat/completions", {"model": "smollm2", "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 8})
        assert status == 200 and chat["choices"][0]["message"]["content"] is not None, chat
        checks = json.load(open("examples/medical_answer_checks.json"))
        item = json.loads(open("examples/kqa_items.jsonl").readline())
        status, judged = post(base, "/v1/judge", {"checks": checks, "items": [item]})
        assert status == 200 and len(judged["results"][0]["judgments"]) == len(checks["checks"] if isinstance(checks, dict) else checks), judged
        print("server: chat and judge answered over loopback", flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
