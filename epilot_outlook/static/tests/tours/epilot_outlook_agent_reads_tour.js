import { registry } from "@web/core/registry";

// An agent opens their inbox from its menu entry (with its unread count) and reads a conversation.
registry.category("web_tour.tours").add("epilot_outlook_agent_reads", {
    steps: () => [
        {
            trigger: ".o_menu_sections button:contains(Inboxes)",
            run: "click",
        },
        {
            content: "The inbox's entry shows its unread conversations",
            trigger: ".dropdown-item:contains(Billing (1))",
            run: "click",
        },
        {
            trigger: ".o_data_row.fw-bold:contains(Private matter) td[name=name]",
            run: "click",
        },
        {
            // The body of an e-mail is rendered apart (a shadow root): its author and attachment are checked here.
            content: "The chatter shows the e-mail, its sender and its attachment",
            trigger: ".o-mail-Message:contains(Carla Customer):contains(contract.pdf)",
        },
        {
            content: "Opening it marked it read: it can be marked unread again",
            trigger: ".o_form_view button[name=action_outlook_mark_unread]",
        },
        {
            content: "The menu's count followed",
            trigger: ".o_menu_sections button:contains(Inboxes)",
            run: "click",
        },
        {
            trigger: ".dropdown-item:contains(Billing):not(:contains(Billing ()",
        },
    ],
});
