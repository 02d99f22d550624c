import { registry } from "@web/core/registry";

// An agent opens a conversation whose reply bounced and whose customer answered automatically (issue 19, item 3).
registry.category("web_tour.tours").add("epilot_outlook_bounces", {
    steps: () => [
        {
            content: "The automatic reply is marked as such",
            trigger: ".o-mail-Message:contains(Automatic reply:) .o-epilot-outlook-auto-reply",
        },
        {
            content: "The reply that bounced has the red envelope",
            trigger: ".o-mail-Message:contains(Danke, erledigt.) .o-mail-Message-notification.text-danger",
            run: "click",
        },
        {
            content: "It says why, in words",
            trigger: ".o-mail-MessageNotificationPopover:contains(domain does not exist or does not receive e-mail)",
        },
    ],
});
