from . import project_task
from . import epilot_shared_inbox
from . import epilot_shared_conversation
