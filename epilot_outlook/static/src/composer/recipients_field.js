import { _t } from "@web/core/l10n/translation";
import { registry } from "@web/core/registry";
import { useService } from "@web/core/utils/hooks";
import {
    FieldMany2ManyTagsEmail,
    FieldMany2ManyTagsEmailMany2xAutocomplete,
    fieldMany2ManyTagsEmail,
} from "@mail/views/web/fields/many2many_tags_email/many2many_tags_email";

/**
 * The autocomplete of a conversation composer's To and Cc: beside the contacts found, a typed e-mail address
 * is offered as is ("Send to …"; Enter takes it), whether or not the agent may create contacts.
 */
export class OutlookRecipientsAutocomplete extends FieldMany2ManyTagsEmailMany2xAutocomplete {
    addCreateSuggestion({ request }) {
        return !!this.props.quickCreate && request.includes("@");
    }

    buildCreateSuggestion(request) {
        return { ...super.buildCreateSuggestion(request), label: _t('Send to "%s"', request) };
    }
}

/**
 * To and Cc of a shared inbox conversation's composer (Reply, Reply All, Forward). Odoo's composer sends to
 * contacts only, and agents may not create contacts: the server makes the contact of a typed address, for a
 * conversation the agent may send from (`epilot.shared.conversation.outlook_recipients`).
 */
export class OutlookRecipientsField extends FieldMany2ManyTagsEmail {
    static components = {
        ...FieldMany2ManyTagsEmail.components,
        Many2XAutocomplete: OutlookRecipientsAutocomplete,
    };

    setup() {
        super.setup();
        this.notification = useService("notification");
        this.quickCreate = this.addAddress.bind(this);
    }

    async addAddress(request) {
        const data = this.props.record.data;
        const [resId] = JSON.parse(data.res_ids || "[]");
        let partners;
        try {
            partners = await this.orm.call(data.model, "outlook_recipients", [[resId], [request]]);
        } catch (error) {
            const message = error.data?.message || error.message;
            this.notification.add(message, { type: "danger" });
            return;
        }
        const list = data[this.props.name];
        const known = new Set(list.records.map((record) => record.resId));
        const add = partners.map((partner) => partner.id).filter((id) => !known.has(id));
        if (add.length) {
            await list.addAndRemove({ add });
        }
    }
}

export const outlookRecipientsField = {
    ...fieldMany2ManyTagsEmail,
    component: OutlookRecipientsField,
};

registry.category("fields").add("epilot_outlook_recipients", outlookRecipientsField);
