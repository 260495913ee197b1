"""DSA-110 figures: site, dishes, spectral and time setup, receiver noise.

Sources: the public DSA-110 software and observing records, as summarised in
the project's instrument notes. Angles in degrees where the name says so.
"""

SITE_LATITUDE_DEG = 37.233387
SITE_LONGITUDE_DEG = -118.283405
SITE_HEIGHT_M = 1188.05
# Written by the real converter; CASA knows its position, which keeps tasks quiet.
TELESCOPE_NAME = "OVRO_MMA"

DISH_DIAMETER_M = 4.65
SEFD_JY = 6500.0

N_SPW = 16
N_CHAN_PER_SPW = 48
CHAN_WIDTH_HZ = 244_140.625
SPW_BANDWIDTH_HZ = N_CHAN_PER_SPW * CHAN_WIDTH_HZ
BAND_LOW_EDGE_HZ = 1311.25e6
CORRELATIONS = ("XX", "YY")

INTEGRATION_S = 12.884902
N_INTEGRATIONS = 24

DEFAULT_POINTING_DEC_DEG = 54.665223
DEFAULT_REFANT = "DSA103"
# SPWs the production notes call "central".
CENTRAL_SPWS = tuple(range(4, 12))

SPEED_OF_LIGHT_M_S = 299_792_458.0
