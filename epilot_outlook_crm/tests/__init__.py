from . import test_conversation_lead
