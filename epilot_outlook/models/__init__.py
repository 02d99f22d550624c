from . import epilot_outlook_address_mixin
from . import epilot_outlook_secret_mixin
from . import epilot_outlook_connection
from . import epilot_shared_inbox
from . import epilot_outlook_email_address
from . import epilot_outlook_oauth_attempt
