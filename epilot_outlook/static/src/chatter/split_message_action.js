import { registerMessageAction } from "@mail/core/common/message_actions";
import { _t } from "@web/core/l10n/translation";

/**
 * "Split Off" on an e-mail of a shared inbox's conversation: the split wizard for that e-mail, which opens the new
 * conversation once done. The server decides what may be split, and by whom.
 */
registerMessageAction("epilot-outlook-split", {
    condition: ({ message, thread }) =>
        thread?.model === "epilot.shared.conversation" &&
        (message.message_type === "email" || (message.message_type === "comment" && !message.isNote)),
    icon: "fa fa-scissors",
    name: _t("Split Off"),
    onSelected: ({ message, owner, thread }) =>
        owner.env.services.action.doAction({
            name: _t("Split Off"),
            type: "ir.actions.act_window",
            res_model: "epilot.conversation.split.wizard",
            view_mode: "form",
            views: [[false, "form"]],
            target: "new",
            context: { default_conversation_id: thread.id, default_message_id: message.id },
        }),
    sequence: 80,
});
