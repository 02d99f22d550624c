from . import crm_lead
from . import epilot_shared_conversation
