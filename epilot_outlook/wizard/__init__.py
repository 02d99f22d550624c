from . import epilot_outlook_address_wizard
