/**
 * From mail to work (issue 19, item 8), the steps every bridge module's tour shares (epilot_outlook_crm,
 * epilot_outlook_project): an agent opens the conversation of an anonymous customer (the inbox creates no
 * contacts), sees their name and address, makes them a contact, creates the record the conversation is about,
 * finds it prefilled (the subject, the contact, the customer's last e-mail) and goes back to the conversation
 * through the record's Conversations button. The data is made, and the outcome checked, by the Python test
 * (epilot_outlook/tests/link_tour_common.py).
 */

/**
 * Open the conversation from a list: a click the list loses while it re-renders (a live update of the list)
 * is made again, until a form shows.
 */
function openConversation(content, subject) {
    return {
        content,
        trigger: `.o_list_view .o_data_row:contains(${subject}) td[name=name]`,
        async run() {
            for (let attempt = 0; attempt < 20 && !document.querySelector(".o_form_view"); attempt++) {
                const row = [...document.querySelectorAll(".o_list_view .o_data_row")].find((el) =>
                    el.textContent.includes(subject)
                );
                row?.querySelector("td[name=name]")?.click();
                await new Promise((resolve) => setTimeout(resolve, 250));
            }
        },
    };
}

/**
 * @param {Object} params
 * @param {string} params.subject The conversation's subject, the record's name.
 * @param {string} params.customer The customer's name.
 * @param {string} params.email The customer's address.
 * @param {string} params.createButton The conversation's button that creates the record (``action_outlook_create_lead``).
 * @param {string} params.linkField The conversation's field linking the record (``lead_id``).
 * @param {Object[]} params.recordSteps What is checked on the new record's form beyond its name and customer.
 * @returns {Object[]} The tour's steps.
 */
export function conversationToRecordSteps({ subject, customer, email, createButton, linkField, recordSteps }) {
    const conversationForm = `.o_form_view:has(button[name=action_outlook_reply_all]):has(.o_field_widget[name=name]:contains(${subject}))`;
    return [
        openConversation("Open the customer's conversation", subject),
        {
            content: "The customer has no contact: their name and address show",
            trigger: `${conversationForm} .o_field_widget[name=correspondent_name]:contains(${customer})`,
        },
        { trigger: `${conversationForm} .o_field_widget[name=correspondent_email]:contains(${email})` },
        {
            content: "Make the customer a contact",
            trigger: `${conversationForm} button[name=action_outlook_create_contact]`,
            run: "click",
        },
        {
            content: "The new contact is the conversation's correspondent",
            trigger: `${conversationForm}:not(:has(button[name=action_outlook_create_contact])) .o_field_widget[name=partner_id] input:value(${customer})`,
        },
        {
            content: "Create the record this conversation is about",
            trigger: `${conversationForm} button[name=${createButton}]`,
            run: "click",
        },
        ...recordSteps,
        {
            content: "The record is prefilled: the subject is its name",
            trigger: `.o_form_view .o_field_widget[name=name] textarea:value(${subject})`,
        },
        {
            content: "… the contact is its customer",
            trigger: `.o_form_view .o_field_widget[name=partner_id] input:value(${customer})`,
        },
        {
            content: "The record shows its conversation",
            trigger: ".o_form_view button[name=action_view_epilot_conversations]:contains(Conversations) .o_stat_value:contains(1)",
            run: "click",
        },
        openConversation("Open the conversation about the record", subject),
        {
            content: "Back on the conversation, linked to the record",
            trigger: `${conversationForm}:not(:has(button[name=${createButton}])) .o_field_widget[name=${linkField}] input:value(${subject})`,
        },
    ];
}
