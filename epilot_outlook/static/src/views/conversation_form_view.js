import { registry } from "@web/core/registry";
import { useService } from "@web/core/utils/hooks";
import { formView } from "@web/views/form/form_view";
import { FormController } from "@web/views/form/form_controller";
import { useEffect } from "@odoo/owl";

/**
 * The conversation form: opening an unread conversation marks it read, in Odoo at once and in Outlook
 * through the server's queue (the request never waits for Microsoft Graph). Once per opening of a record
 * (a new resId: the form opened, or the pager moved): the agent's own Mark as Unread, and any later reload of
 * the same record, leave it unread.
 */
export class ConversationFormController extends FormController {
    setup() {
        super.setup();
        this.orm = useService("orm");
        useEffect(
            (resId) => {
                if (resId && this.model.root.data.is_unread) {
                    this.markRead(resId);
                }
            },
            () => [this.model.root?.resId]
        );
    }

    async markRead(resId) {
        await this.orm.call("epilot.shared.conversation", "action_outlook_mark_read", [[resId]]);
        const root = this.model.root;
        if (root.resId === resId && !(await root.isDirty())) {
            await root.load();
        }
        this.env.bus.trigger("EPILOT_OUTLOOK:UNREAD-CHANGED");
    }
}

export const conversationFormView = {
    ...formView,
    Controller: ConversationFormController,
};

registry.category("views").add("epilot_conversation_form", conversationFormView);
