from . import epilot_outlook_address_wizard
from . import epilot_outlook_erase_wizard
from . import epilot_conversation_merge_wizard
