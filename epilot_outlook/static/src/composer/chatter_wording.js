import { Composer } from "@mail/core/common/composer";
import { _t } from "@web/core/l10n/translation";
import { patch } from "@web/core/utils/patch";

export const CONVERSATION_MODEL = "epilot.shared.conversation";

/**
 * On a shared inbox's conversation, the chatter's message is an e-mail to the customer from the shared mailbox,
 * not a message to followers: the composer says so.
 */
patch(Composer.prototype, {
    get placeholder() {
        if (this.thread?.model === CONVERSATION_MODEL && !this.props.placeholder) {
            return this.props.type === "note"
                ? _t("Log an internal note: only the team sees it…")
                : _t("Reply to the customer by e-mail, as the shared mailbox…");
        }
        return super.placeholder;
    },
});
