from . import test_conversation_lead
from . import test_conversation_lead_tour
