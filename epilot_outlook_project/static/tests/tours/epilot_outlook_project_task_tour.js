import { registry } from "@web/core/registry";
import { conversationToRecordSteps } from "@epilot_outlook/../tests/tours/utils/conversation_link_steps";

/**
 * From mail to a task (issue 19, items 8 and 9): an agent who is a project user makes an anonymous customer a
 * contact and creates the task of their conversation in the inbox's project.
 * @see epilot_outlook_project/tests/test_conversation_task_tour.py
 */
registry.category("web_tour.tours").add("epilot_outlook_project_task", {
    steps: () =>
        conversationToRecordSteps({
            subject: "Tour: wrong invoice address",
            customer: "Carla Customer",
            email: "carla@fabrikam.com",
            createButton: "action_outlook_create_task",
            linkField: "task_id",
            recordSteps: [
                {
                    content: "The task is prefilled: the customer's last e-mail is its description",
                    trigger: ".o_form_view .o_field_widget[name=description]:contains(Please correct the address on invoice 42)",
                },
                {
                    content: "… in the inbox's project",
                    trigger: ".o_form_view .o_field_widget[name=project_id] input:value(Billing follow-ups)",
                },
            ],
        }),
});
