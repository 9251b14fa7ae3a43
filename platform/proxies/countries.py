"""ISO 3166-1 alpha-2 country codes (the 249 officially assigned), the only codes the proxy pool uses."""

from __future__ import annotations

from django.core.exceptions import ValidationError

_CODES = """
AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV
BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES
ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE
IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY
MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU
NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM
SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE
VG VI VN VU WF WS YE YT ZA ZM ZW
"""
ISO_3166_ALPHA_2 = frozenset(_CODES.split())


def is_country(code: str) -> bool:
    return code.upper() in ISO_3166_ALPHA_2


def validate_country(value: str) -> None:
    """Model validator: blank (a proxy of no particular country) or an ISO 3166-1 alpha-2 code."""
    if value and not is_country(value):
        raise ValidationError(f"{value!r} is not an ISO 3166-1 alpha-2 country code (e.g. US, DE; GB, not UK)")
