"""Bare mitmproxy (DumpMaster, no addons of ours), run inside the isolated mitmproxy venv.

python mitm_baseline.py CONFDIR PORT UPSTREAM_CA
"""

import asyncio
import sys

from mitmproxy import options
from mitmproxy.tools.dump import DumpMaster


async def main() -> None:
    confdir, port, upstream_ca = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    opts = options.Options(
        listen_host="127.0.0.1",
        listen_port=port,
        confdir=confdir,
        ssl_verify_upstream_trusted_ca=upstream_ca,
    )
    master = DumpMaster(opts, with_termlog=False, with_dumper=False)
    await master.run()


asyncio.run(main())
