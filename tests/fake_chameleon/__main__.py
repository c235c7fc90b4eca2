"""Run the fake by hand: `python -m tests.fake_chameleon` prints the OS_* exports, serves until Ctrl-C."""

import time

from tests.fake_chameleon import FakeChameleon, FakeConfig

fake = FakeChameleon(FakeConfig(ssh_port=2222, lease_start_delay=5, server_boot_delay=10)).start()
for key, value in fake.env().items():
    print(f"export {key}={value}")
print("# servers answer SSH banners on port 2222 (spec: ssh_port: 2222); Ctrl-C stops", flush=True)
try:
    while True:
        time.sleep(3600)
except KeyboardInterrupt:
    fake.stop()
