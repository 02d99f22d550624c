from . import epilot_outlook_address_wizard
from . import epilot_outlook_erase_wizard
