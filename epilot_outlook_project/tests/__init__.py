from . import test_conversation_task
