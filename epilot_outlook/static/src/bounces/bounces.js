import { Notification } from "@mail/core/common/notification_model";
import { patch } from "@web/core/utils/patch";

/**
 * A reply Microsoft 365 reported as not delivered: the delivery popover of the red envelope gives the reason the
 * server worded in the reader's language (``outlook_bounce_text``), not only Odoo's "Bounce".
 */
patch(Notification.prototype, {
    get failureMessage() {
        return this.outlook_bounce_text || super.failureMessage;
    },
});
