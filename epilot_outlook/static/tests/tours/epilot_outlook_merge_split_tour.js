import { registry } from "@web/core/registry";

/**
 * An agent merges three conversations from the list's Actions menu into the oldest, then splits the unrelated
 * e-mail off again from the chatter. The data is made, and the outcome checked, by the Python test.
 * @see epilot_outlook/tests/test_merge_split.py
 */
const row = (subject) => `.o_data_row:contains(${subject}) td.o_list_record_selector input`;
const email = ".o-mail-Message:contains(Tour: unrelated invoice)";

/** Select a row: a click the list loses while it re-renders (a live update of the list) is made again. */
const select = (subject) => ({
    content: `Select ${subject}`,
    trigger: row(subject),
    async run() {
        for (let attempt = 0; attempt < 20; attempt++) {
            const tr = [...document.querySelectorAll(".o_data_row")].find((el) => el.textContent.includes(subject));
            const input = tr?.querySelector("td.o_list_record_selector input");
            if (input?.checked) {
                return;
            }
            input?.click();
            await new Promise((resolve) => setTimeout(resolve, 250));
        }
    },
});

registry.category("web_tour.tours").add("epilot_outlook_merge_split", {
    steps: () => [
        select("Tour: broken meter"),
        select("Tour: meter still broken"),
        select("Tour: unrelated invoice"),
        { trigger: ".o_control_panel:contains(3 selected)" },
        {
            content: "Open the Actions menu of the selection",
            trigger: ".o_cp_action_menus button",
            run: "click",
        },
        { trigger: ".o-dropdown--menu .dropdown-item:contains(Merge)", run: "click" },
        {
            content: "The oldest conversation is proposed to merge into",
            trigger: ".modal .o_field_widget[name=target_id] input:value(Tour: broken meter)",
        },
        { trigger: ".modal button[name=action_outlook_merge]", run: "click" },
        {
            content: "The conversation that stays says what was merged into it",
            trigger: ".o_form_view:has(.o_field_widget[name=name]:contains(Tour: broken meter)) .o-mail-Message:contains(into this conversation)",
        },
        {
            content: "Split the unrelated e-mail off",
            trigger: email,
            run: `hover && click ${email} [title='Expand']`,
        },
        { trigger: ".o-dropdown--menu .dropdown-item:contains(Split Off)", run: "click" },
        { trigger: ".modal .o_field_widget[name=subject]:contains(Tour: unrelated invoice)" },
        { trigger: ".modal button[name=action_outlook_split]", run: "click" },
        {
            content: "The new conversation says where it came from",
            trigger: ".o_form_view:has(.o_field_widget[name=name]:contains(Tour: unrelated invoice)) .o-mail-Message:contains(Split off from)",
        },
    ],
});
