import { patch } from "@web/core/utils/patch";
import { useService } from "@web/core/utils/hooks";
import { onMounted, onWillUnmount, useEffect } from "@odoo/owl";
import { Composer } from "@mail/core/common/composer";
import { Thread } from "@mail/core/common/thread_model";
import { MailComposerFormController } from "@mail/chatter/web/mail_composer_form";
import {
    ANYWAY_KEY,
    CONVERSATION_MODEL,
    ReplyCancelled,
    SEEN_KEY,
    askSendAnyway,
    presenceSessions,
    replyConflictOf,
} from "./presence_session";

/**
 * No double answers, where replies are written: the chatter's composer says "writing a reply" while it holds
 * text, and a reply is sent with the id of the newest message the agent's screen knew (SEEN_KEY); when the
 * server answers that someone else replied since, the agent is asked "Send anyway?" and the reply is posted again
 * with ANYWAY_KEY, or stays in the composer. The full composer asks before sending (and the server checks again).
 */

function sessionOf(model, resId) {
    return model === CONVERSATION_MODEL ? presenceSessions.get(resId) : undefined;
}

patch(Thread.prototype, {
    async post(body, postData = {}, extraData = {}) {
        const session = !postData.isNote && sessionOf(this.model, this.id);
        if (!session || session.seenMessageId === null) {
            return super.post(...arguments);
        }
        const context = { ...extraData.context, [SEEN_KEY]: session.seenMessageId };
        let message;
        try {
            message = await super.post(body, postData, { ...extraData, context });
        } catch (error) {
            const conflict = replyConflictOf(error);
            if (!conflict) {
                throw error;
            }
            if (!(await askSendAnyway(this.store.env.services.dialog, conflict))) {
                throw new ReplyCancelled();
            }
            message = await super.post(body, postData, {
                ...extraData,
                context: { ...context, [ANYWAY_KEY]: true },
            });
        }
        // Whatever came before the agent's own reply, the agent has answered after it.
        if (message?.id && message.id > session.seenMessageId) {
            session.seenMessageId = message.id;
        }
        return message;
    },
});

patch(Composer.prototype, {
    setup() {
        super.setup();
        useEffect(
            (writing, model, resId) => {
                sessionOf(model, resId)?.setWriting(writing);
            },
            () => {
                const composer = this.props.composer;
                const thread = composer?.thread;
                const writing =
                    this.props.type !== "note" && Boolean(composer?.composerText?.trim());
                return [writing, thread?.model, thread?.id];
            }
        );
        onWillUnmount(() => {
            const thread = this.props.composer?.thread;
            if (this.props.type !== "note") {
                sessionOf(thread?.model, thread?.id)?.setWriting(false);
            }
        });
    },

    async processMessage(cb) {
        try {
            return await super.processMessage(cb);
        } catch (error) {
            if (!(error instanceof ReplyCancelled)) {
                throw error;
            }
            this.state.active = true; // not sent: the text stays, the composer works again
        }
    },
});

patch(MailComposerFormController.prototype, {
    setup() {
        super.setup();
        this.epilotOrm = useService("orm");
        this.epilotDialog = useService("dialog");
        // The record is loaded once mounted: a reply written here is a reply being written.
        onMounted(() => {
            this.epilotWritingIn = this.epilotSession();
            this.epilotWritingIn?.setWriting(true);
        });
        onWillUnmount(() => this.epilotWritingIn?.setWriting(false));
    },

    epilotSession() {
        const data = this.model.root.data;
        let resIds = [];
        try {
            resIds = JSON.parse(data.res_ids || "[]");
        } catch {
            return undefined;
        }
        return resIds.length === 1 && !data.subtype_is_log
            ? sessionOf(data.model, resIds[0])
            : undefined;
    },

    async beforeExecuteActionButton(clickParams) {
        const session = clickParams.name === "action_send_mail" && this.epilotSession();
        if (session && session.seenMessageId !== null) {
            const resId = JSON.parse(this.model.root.data.res_ids)[0];
            const conflict = await this.epilotOrm.call(
                CONVERSATION_MODEL,
                "outlook_reply_conflict",
                [[resId], session.seenMessageId]
            );
            if (conflict && !(await askSendAnyway(this.epilotDialog, conflict))) {
                return false;
            }
            const seen = session.seenMessageId;
            if (conflict) {
                // Answered knowing of it: the next reply asks only about newer ones.
                session.seenMessageId = Math.max(seen, conflict.message_id);
            }
            clickParams.buttonContext = {
                ...clickParams.buttonContext,
                [SEEN_KEY]: seen,
                ...(conflict ? { [ANYWAY_KEY]: true } : {}),
            };
        }
        return super.beforeExecuteActionButton(clickParams);
    },
});
