import { registry } from "@web/core/registry";

/**
 * Live screens (issue 19): an agent has a customer's conversation open; the customer answers, the sync imports
 * it (run by the Python test as soon as the form was read) and the open form shows it without a reload: the new
 * e-mail in the chatter, the status back to Open, and that change tracked. Back on the list, then on the kanban,
 * new customers' conversations appear the same way. The e-mail's step logs when it showed, for the test's latency
 * figure.
 * @see epilot_outlook/tests/test_live_tour.py
 */
function shadowTexts() {
    return [...document.querySelectorAll(".o-mail-Message-body .overflow-x-auto")].map(
        (host) => host.shadowRoot?.textContent || host.textContent
    );
}

registry.category("web_tour.tours").add("epilot_outlook_live_tour", {
    steps: () => [
        {
            content: "The conversation is open, its chatter loaded",
            trigger: ".o_form_view .o-mail-Chatter .o-mail-Message",
        },
        {
            content: "The customer's answer shows without a reload",
            trigger: ".o_form_view .o-mail-Chatter .o-mail-Message",
            timeout: 30000,
            async run() {
                for (let attempt = 0; attempt < 1500; attempt++) {
                    if (shadowTexts().some((text) => text.includes("Live tour: the answer"))) {
                        console.log(`EPILOT_OUTLOOK_LIVE_SHOWN ${Date.now()}`);
                        return;
                    }
                    await new Promise((resolve) => setTimeout(resolve, 20));
                }
                throw new Error("The customer's answer did not show in the open conversation");
            },
        },
        {
            content: "The status followed: Open again",
            trigger: ".o_form_view .o_statusbar_status button.o_arrow_button_current:contains(Open)",
        },
        {
            content: "The change of status is in the chatter",
            trigger:
                ".o-mail-Message-tracking:has(.o-mail-Message-trackingOld:contains(Waiting)):has(.o-mail-Message-trackingNew:contains(Open))",
        },
        {
            content: "Back to the list",
            trigger: ".o_breadcrumb li.o_back_button a",
            run: "click",
        },
        {
            content: "The list is loaded",
            trigger: ".o_list_view .o_data_row",
        },
        {
            content: "A new customer's conversation appears in the list without a reload",
            trigger: ".o_list_view .o_data_row:contains(Live tour: a new customer)",
            timeout: 30000,
        },
        {
            content: "The kanban, by status",
            trigger: ".o_switch_view.o_kanban",
            run: "click",
        },
        {
            content: "The kanban is loaded",
            trigger: ".o_kanban_view .o_kanban_record:contains(Live tour: a new customer)",
        },
        {
            content: "Another customer's conversation appears in the kanban without a reload",
            trigger: ".o_kanban_view .o_kanban_record:contains(Live tour: a third customer)",
            timeout: 30000,
        },
    ],
});
