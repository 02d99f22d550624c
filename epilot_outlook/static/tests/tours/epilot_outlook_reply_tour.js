import { registry } from "@web/core/registry";
import { inputFiles } from "@web/../tests/utils";

/**
 * An agent opens a shared inbox's conversations, reads the customer's e-mail and replies from the chatter
 * with an attachment. The data (a synced inbox, the customer's e-mail) is made by the Python test that runs
 * this tour, which then checks the shared mailbox's Sent Items in the sandbox.
 * @see epilot_outlook/tests/test_send_tour.py
 */
registry.category("web_tour.tours").add("epilot_outlook_reply_tour", {
    steps: () => [
        {
            content: "Open the conversation of the customer's e-mail",
            trigger: ".o_data_row td:contains(Tour: meter reading)",
            run: "click",
        },
        {
            content: "Read the customer's e-mail in the chatter",
            trigger: ".o-mail-Message:contains(customer@fabrikam.com) .o-mail-Message-body .overflow-x-auto",
            run() {
                // An e-mail's body is shown in a shadow root, out of reach of :contains.
                const host = document.querySelector(".o-mail-Message-body .overflow-x-auto");
                const text = host.shadowRoot ? host.shadowRoot.textContent : "";
                if (!text.includes("My meter reads 4711")) {
                    throw new Error(`The customer's e-mail is not shown (got: ${text})`);
                }
            },
        },
        {
            content: "Click on Reply by E-mail (the chatter's Send message on a conversation)",
            trigger: "button:contains(Reply by E-mail)",
            run: "click",
        },
        {
            content: "Write the reply",
            trigger: ".o-mail-Composer-input",
            run: "edit Thank you, the reading is booked.",
        },
        {
            content: "Attach a file",
            trigger: ".o-mail-Composer button[title='Attach Files']",
            async run() {
                const files = [new File(["reading 4711"], "reading.txt", { type: "text/plain" })];
                await inputFiles(".o-mail-Composer .o_input_file", files);
            },
        },
        {
            trigger: '.o-mail-Composer .o-mail-AttachmentContainer:not(.o-isUploading):contains("reading.txt")',
        },
        {
            content: "Send",
            trigger: ".o-mail-Composer-send:enabled",
            run: "click",
        },
        {
            content: "The reply is in the conversation, with its attachment",
            trigger: ".o-mail-Message:contains(the reading is booked) .o-mail-AttachmentContainer:contains(reading.txt)",
        },
    ],
});
