import { registry } from "@web/core/registry";

// An agent opens an unread conversation (which marks it read), then marks it unread again: it stays unread,
// on the form after its reload and in the list (issue 19: the form's reload marked it read at once).
registry.category("web_tour.tours").add("epilot_outlook_mark_unread", {
    steps: () => [
        {
            trigger: ".o_data_row.fw-bold:contains(Call me back) td[name=name]",
            run: "click",
        },
        {
            content: "Opening it marked it read",
            trigger: ".o_form_view button[name=action_outlook_mark_unread]",
            run: "click",
        },
        {
            content: "Unread after the form's reload",
            trigger: ".o_form_view button[name=action_outlook_mark_read]",
        },
        {
            trigger: ".o_breadcrumb .o_back_button a, .o_breadcrumb li.breadcrumb-item a",
            run: "click",
        },
        {
            content: "Still unread in the list",
            trigger: ".o_data_row.fw-bold:contains(Call me back)",
        },
    ],
});
