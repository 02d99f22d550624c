from . import test_access
from . import test_constraints
from . import test_install
from . import test_neutralize
from . import test_secret_storage
from . import test_views
from . import test_connect_flow
from . import test_refresh_transactions
