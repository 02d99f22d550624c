import { registry } from "@web/core/registry";
import { conversationToRecordSteps } from "@epilot_outlook/../tests/tours/utils/conversation_link_steps";

/**
 * From mail to a lead (issue 19, items 8 and 9): an agent who is a salesperson makes an anonymous customer a
 * contact and creates the lead of their conversation.
 * @see epilot_outlook_crm/tests/test_conversation_lead_tour.py
 */
registry.category("web_tour.tours").add("epilot_outlook_crm_lead", {
    steps: () =>
        conversationToRecordSteps({
            subject: "Tour: quote for 40 heat pumps",
            customer: "Carla Customer",
            email: "carla@fabrikam.com",
            createButton: "action_outlook_create_lead",
            linkField: "lead_id",
            recordSteps: [
                {
                    content: "The lead is prefilled: the customer's last e-mail is in its notes",
                    trigger: ".o_form_view .o_field_widget[name=description]:contains(We need 40 heat pumps by March)",
                },
            ],
        }),
});
