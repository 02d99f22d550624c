import { patch } from "@web/core/utils/patch";
import { useBus } from "@web/core/utils/hooks";
import { FormController } from "@web/views/form/form_controller";
import { KanbanController } from "@web/views/kanban/kanban_controller";
import { ListController } from "@web/views/list/list_controller";
import { LIVE_ADDRESSES, LIVE_CONVERSATIONS } from "./live_service";

const CONVERSATION = "epilot.shared.conversation";
const ADDRESS = "epilot.outlook.email.address";

/**
 * Runs ``reload`` for each notification, one at a time: notifications arriving during a reload make one more
 * reload after it, not one each.
 */
function makeSerialReloader(reload) {
    let running = null;
    let again = false;
    const run = async () => {
        if (running) {
            again = true;
            return running;
        }
        running = (async () => {
            try {
                do {
                    again = false;
                    await reload();
                } while (again);
            } finally {
                running = null;
            }
        })();
        return running;
    };
    return run;
}

/**
 * A list or kanban of conversations reloads in place when conversations changed: same page, same order and
 * filters, the selected rows selected again. It waits while a row is being edited.
 */
function setupLiveList(controller) {
    if (controller.props.resModel !== CONVERSATION) {
        return;
    }
    const reload = makeSerialReloader(async () => {
        const root = controller.model.root;
        if (!root || root.editedRecord) {
            return;
        }
        if (controller.model.useSampleModel) {
            // An empty list shows sample rows: the first conversation replaces them.
            await controller.model.load();
            return;
        }
        const selected = new Set((root.selection || []).map((record) => record.resId));
        const domainSelected = root.isDomainSelected;
        await root.load();
        if (selected.size) {
            for (const record of controller.model.root.records || []) {
                if (selected.has(record.resId)) {
                    record.toggleSelection(true);
                }
            }
            if (domainSelected) {
                controller.model.root.selectDomain?.(true);
            }
        }
    });
    useBus(controller.env.bus, LIVE_CONVERSATIONS, () => reload());
}

patch(ListController.prototype, {
    setup() {
        super.setup(...arguments);
        setupLiveList(this);
    },
});

patch(KanbanController.prototype, {
    setup() {
        super.setup(...arguments);
        setupLiveList(this);
    },
});

/**
 * An open conversation reloads its record and fetches the chatter's new messages when it changed, unless the
 * user has unsaved edits (they keep theirs; the next save or reload shows the rest). An open address follows
 * its backfill and push the same way.
 */
patch(FormController.prototype, {
    setup() {
        super.setup(...arguments);
        const resModel = this.props.resModel;
        if (resModel !== CONVERSATION && resModel !== ADDRESS) {
            return;
        }
        const reload = makeSerialReloader(async () => {
            const root = this.model.root;
            if (!root?.resId || (await root.isDirty())) {
                return;
            }
            await root.load();
            if (resModel === CONVERSATION) {
                const store = this.env.services["mail.store"];
                store?.Thread.insert({ model: resModel, id: root.resId }).fetchNewMessages();
            }
        });
        const [event, key] =
            resModel === CONVERSATION ? [LIVE_CONVERSATIONS, "conversation_ids"] : [LIVE_ADDRESSES, "address_ids"];
        useBus(this.env.bus, event, ({ detail }) => {
            if (detail?.[key]?.includes(this.model.root?.resId)) {
                reload();
            }
        });
    },
});
