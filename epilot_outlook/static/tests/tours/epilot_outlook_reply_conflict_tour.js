import { registry } from "@web/core/registry";
import { rpc } from "@web/core/network/rpc";

/**
 * No double answers: Bob opened the conversation before Ann's reply went out; his reply asks first. "Don't send"
 * keeps his text in the composer; "Send anyway" sends it. The data is made by the Python test that runs this tour.
 * @see epilot_outlook/tests/test_conversation_presence.py
 */
registry.category("web_tour.tours").add("epilot_outlook_reply_conflict_tour", {
    steps: () => [
        {
            content: "The conversation is open and its presence known",
            trigger: ".o_form_view:has(.o_epilot_presence_root[data-seen])",
        },
        {
            content: "Bob sees that Ann has the conversation open",
            trigger: ".o_epilot_presence .o_epilot_presence_item[data-state=viewing]:contains(Ann Agent is viewing)",
        },
        {
            content: "Reply from the chatter",
            trigger: ".o-mail-Chatter-sendMessage",
            run: "click",
        },
        {
            content: "Write the reply",
            trigger: ".o-mail-Composer-input",
            run: "edit Your meter reading is booked.",
        },
        {
            content: "Send",
            trigger: ".o-mail-Composer-send:enabled",
            run: "click",
        },
        {
            content: "Odoo asks first: Ann replied since",
            trigger: ".modal:contains(Someone already replied) .modal-body:contains(Ann Agent replied)",
        },
        {
            content: "Don't send",
            trigger: ".modal-footer button.btn-secondary", // "Don't send" (an apostrophe defeats :contains)
            run: "click",
        },
        {
            content: "The reply is still in the composer",
            trigger: "body:not(:has(.modal))",
            run() {
                const input = document.querySelector(".o-mail-Composer-input");
                if (!input || !input.value.includes("Your meter reading is booked.")) {
                    throw new Error(`The composer lost the reply (got: ${input?.value})`);
                }
            },
        },
        {
            content: "Send again",
            trigger: ".o-mail-Composer-send:enabled",
            run: "click",
        },
        {
            content: "Send anyway",
            trigger: ".modal-footer button:contains(Send anyway)",
            run: "click",
        },
        {
            content: "The reply is in the conversation",
            trigger: ".o-mail-Message:contains(Your meter reading is booked.)",
        },
        {
            content: "Open the conversation again (from before Ann's reply, as the test has it)",
            trigger: ".o_form_view:has(.o_epilot_presence_root[data-seen])",
            run() {
                window.location.reload();
            },
            expectUnloadPage: true,
        },
        {
            trigger: ".o_form_view:has(.o_epilot_presence_root[data-seen])",
        },
        {
            content: "Reply from the chatter, in the full composer",
            trigger: ".o-mail-Chatter-sendMessage",
            run: "click",
        },
        {
            trigger: ".o-mail-Composer-input",
            run: "edit The technician comes on Monday.",
        },
        {
            trigger: ".o-mail-Composer button[title='Open Full Composer']",
            run: "click",
        },
        {
            content: "The full composer writes the reply",
            trigger: ".o_mail_composer_form .note-editable:contains(The technician comes on Monday.)",
        },
        {
            content: "Send from the full composer",
            trigger: ".modal-footer button[name=action_send_mail]:enabled",
            run: "click",
        },
        {
            content: "The full composer asks first too",
            trigger: ".modal:contains(Someone already replied) .modal-body:contains(Ann Agent replied)",
        },
        {
            trigger: ".modal-footer button:contains(Send anyway)",
            run: "click",
        },
        {
            content: "The full composer's reply is in the conversation",
            trigger: ".o-mail-Message:contains(The technician comes on Monday.)",
        },
        {
            content: "A refusal nothing catches shows Odoo's warning dialog, titled by the server",
            trigger: ".o_form_view:has(.o_epilot_presence_root[data-seen])",
            run() {
                const root = document.querySelector(".o_epilot_presence_root");
                const threadId = parseInt(window.location.pathname.split("/").at(-1));
                rpc("/mail/message/post", {
                    thread_model: "epilot.shared.conversation",
                    thread_id: threadId,
                    post_data: { body: "Unasked", message_type: "comment", subtype_xmlid: "mail.mt_comment" },
                    context: { epilot_outlook_seen_message_id: parseInt(root.dataset.seen) },
                });
            },
        },
        {
            content: "Titled 'Someone already replied', not 'Invalid Operation'",
            trigger: ".modal .modal-title:contains(Someone already replied)",
        },
        {
            trigger: ".modal-footer button",
            run: "click",
        },
        {
            trigger: "body:not(:has(.modal))",
        },
    ],
});
