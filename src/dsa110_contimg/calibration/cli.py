"""The original pipeline's spelling of ``calibrate`` and ``apply``, unchanged::

    python -m dsa110_contimg.calibration.cli calibrate --ms X.ms --field 0 --refant 103 \\
        --auto-fields --model-source catalog --bp-combine-field --combine-spw \\
        --prebp-phase --prebp-minsnr 3.0
"""

import sys

from dsa110_contimg.cli.app import main_original_spelling as main

if __name__ == "__main__":
    sys.exit(main())
