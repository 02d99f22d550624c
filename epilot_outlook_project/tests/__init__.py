from . import test_conversation_task
from . import test_conversation_task_tour
