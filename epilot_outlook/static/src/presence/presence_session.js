import { _t } from "@web/core/l10n/translation";
import { ConfirmationDialog } from "@web/core/confirmation_dialog/confirmation_dialog";

/**
 * No double answers (issue 19, item 2), the parts every screen of a conversation shares: which conversations this
 * tab has open (their presence sessions, opened by the presence widget of the conversation form), and the
 * question asked when someone else's reply went out since the agent opened the conversation.
 * @see epilot_outlook/models/epilot_shared_conversation_presence.py
 */
export const CONVERSATION_MODEL = "epilot.shared.conversation";
export const PRESENCE_TYPE = "epilot_outlook.presence";
export const SEEN_KEY = "epilot_outlook_seen_message_id";
export const ANYWAY_KEY = "epilot_outlook_send_anyway";
export const REPLY_CONFLICT = "epilot_outlook.reply_conflict";

/** The client's name of a conversation's presence channel; the server gives it to members only. */
export function presenceChannel(conversationId) {
    return `epilot.shared.conversation_presence_${conversationId}`;
}

/**
 * conversation id -> { seenMessageId, setWriting(bool) }: set while a conversation form shows it. The seen
 * message id is the newest message of the conversation when it was opened (then the agent's own last reply).
 */
export const presenceSessions = new Map();

/** The agent did not confirm sending: the composer keeps the text. */
export class ReplyCancelled extends Error {}

/**
 * Ask "Send anyway?".
 * @returns {Promise<boolean>}
 */
export function askSendAnyway(dialogService, { title, message }) {
    return new Promise((resolve) => {
        dialogService.add(
            ConfirmationDialog,
            {
                title: title || _t("Someone already replied"),
                body: message,
                confirmLabel: _t("Send anyway"),
                cancelLabel: _t("Don't send"),
                confirm: () => resolve(true),
                cancel: () => resolve(false),
            },
            { onClose: () => resolve(false) }
        );
    });
}

/** The conflict a server error reports, or null. */
export function replyConflictOf(error) {
    const context = error?.data?.context;
    if (context?.exception_class !== REPLY_CONFLICT) {
        return null;
    }
    return { title: context.title, message: error.data.message };
}
