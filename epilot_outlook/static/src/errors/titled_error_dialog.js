import { registry } from "@web/core/registry";
import { WarningDialog } from "@web/core/errors/error_dialogs";

/**
 * The dialog of epilot_outlook's titled errors (tools/user_errors.py): Odoo titles every UserError "Invalid
 * Operation"; these say what happened (the server sends the title in the error's context).
 */
export class TitledWarningDialog extends WarningDialog {
    inferTitle() {
        return this.props.data?.context?.title || super.inferTitle();
    }
}

registry
    .category("error_dialogs")
    .add("epilot_outlook.titled_user_error", TitledWarningDialog)
    .add("epilot_outlook.reply_conflict", TitledWarningDialog);
