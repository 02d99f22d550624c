import { registry } from "@web/core/registry";

/**
 * An agent answers a customer's e-mail the ways Outlook offers (issue 19): the chatter says it replies to the
 * customer as the shared mailbox (with a canned response), Reply All shows the Cc row and the quoted original,
 * Forward shows the forwarded e-mail and its file and takes an address nobody knows yet. The data is made by
 * the Python test that runs this tour, which then checks what the sandbox received.
 * @see epilot_outlook/tests/test_composer_tour.py
 */
registry.category("web_tour.tours").add("epilot_outlook_composer_tour", {
    steps: () => [
        {
            content: "Open the customer's conversation",
            trigger: ".o_data_row td:contains(Tour: composer)",
            run: "click",
        },
        {
            content: "The chatter's button says it replies by e-mail",
            trigger: ".o-mail-Chatter-sendMessage:contains(Reply by E-mail)",
            run: "click",
        },
        {
            content: "The composer says the reply leaves as the shared mailbox",
            trigger: ".o-mail-Composer-input[placeholder*='as the shared mailbox']",
        },
        {
            content: "The customer is a recipient, the shared mailbox is not",
            trigger: ".o-mail-RecipientsInput:contains(customer@fabrikam.com)",
            run() {
                const recipients = document.querySelector(".o-mail-RecipientsInput").textContent;
                if (recipients.includes("support@contoso")) {
                    throw new Error(`The shared mailbox is shown as a recipient: ${recipients}`);
                }
            },
        },
        {
            content: "Type the shortcut of the agents' canned response",
            trigger: ".o-mail-Composer-input",
            run: "edit ::rece",
        },
        {
            content: "Pick the canned response",
            trigger: ".o-mail-Composer-suggestion:contains(received)",
            run: "click",
        },
        {
            trigger: ".o-mail-Composer-input:value(we received it)",
        },
        {
            content: "Send the reply",
            trigger: ".o-mail-Composer-send:enabled",
            run: "click",
        },
        {
            trigger: ".o-mail-Message:contains(we received it)",
        },
        {
            content: "Reply All",
            trigger: ".o_form_view button[name=action_outlook_reply_all]",
            run: "click",
        },
        {
            content: "Reply All shows the original's Cc in the Cc row",
            trigger: ".modal [name=epilot_outlook_cc_partner_ids] .o_tag",
        },
        {
            content: "... and quotes the original",
            trigger: ".modal [name=body]:contains(My meter reads 4711)",
        },
        {
            content: "Discard",
            trigger: ".modal button:contains(Discard)",
            run: "click",
        },
        {
            content: "Forward",
            trigger: ".o_form_view:not(:has(.modal)) button[name=action_outlook_forward]",
            run: "click",
        },
        {
            content: "The composer shows the forwarded e-mail and its file",
            trigger: ".modal [name=body]:contains(Forwarded message):contains(meter.jpg):contains(My meter reads 4711)",
        },
        {
            content: "Type an address nobody knows yet",
            trigger: ".modal [name=partner_ids] input",
            run: "edit new.person@example.org",
        },
        {
            content: "It is offered as is",
            trigger: ".o-autocomplete--dropdown-item:contains(Send to)",
        },
        {
            content: "Enter takes it",
            trigger: ".modal [name=partner_ids] input",
            run: "press Enter",
        },
        {
            trigger: ".modal [name=partner_ids] .o_tag:contains(new.person)",
        },
        {
            content: "Send the forward",
            trigger: ".modal button.o_mail_send:enabled",
            run: "click",
        },
        {
            content: "The forward is in the conversation",
            trigger: "body:not(:has(.modal)) .o-mail-Message:contains(Forwarded message)",
        },
    ],
});
