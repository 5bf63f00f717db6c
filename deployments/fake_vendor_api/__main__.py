"""`python -m deployments.fake_vendor_api [--port N]`: serve the fake until interrupted."""

import sys

from deployments.fake_vendor_api import main

sys.exit(main())
